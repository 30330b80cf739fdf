// Runs on the OAuth callback page that the backend renders at /api/v1/oauth/{provider}/callback. That
// page carries the result in <div id="result" data-provider data-ok data-code data-message>.
// In a popup: tell the opener (only if it is our own origin) and close. Not in a popup: do
// nothing; the page itself shows the result with a link back to /oauth.

const result = document.getElementById("result");
if (result && window.opener && !window.opener.closed) {
  const d = result.dataset;
  try {
    window.opener.postMessage(
      {
        source: "qetta-oauth",
        provider: d.provider || null,
        ok: d.ok === "true",
        code: d.code || null,
        message: d.message || "",
      },
      location.origin, // delivered only if the opener is still on our origin
    );
    window.close();
  } catch (_) {
    // The opener is gone or not ours: stay open, the page shows the result.
  }
}
