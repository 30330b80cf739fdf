//! An SVG line chart of throughput against concurrency, drawn without a plotting crate.

/// One line: a name, a colour and (concurrency, requests per second) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub points: Vec<(usize, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart, with the concurrencies evenly spaced on the x axis.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 230.0, 40.0, 50.0);
    let xs: Vec<usize> = {
        let mut v: Vec<usize> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let ymax = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0_f64, f64::max);
    // A round top for the y axis: 1, 2 or 5 times a power of ten.
    let mag = 10f64.powf(ymax.log10().floor());
    let top_value = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|v| *v >= ymax).unwrap_or(10.0 * mag);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x_of = |c: usize| {
        let i = xs.iter().position(|x| *x == c).unwrap_or(0) as f64;
        left + if xs.len() > 1 { i * plot_w / (xs.len() - 1) as f64 } else { plot_w / 2.0 }
    };
    let y_of = |v: f64| top + plot_h - v / top_value * plot_h;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    for i in 0..=5 {
        let v = top_value * i as f64 / 5.0;
        let y = y_of(v);
        out.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>\n",
            left + plot_w,
            left - 6.0,
            y + 4.0,
            v
        ));
    }
    for c in &xs {
        let x = x_of(*c);
        out.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{c}</text>\n",
            top + plot_h,
            top + plot_h + 18.0
        ));
    }
    out.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">concurrent connections</text>\n\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">requests per second</text>\n",
        left + plot_w / 2.0,
        h - 10.0,
        top + plot_h / 2.0
    ));
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s.points.iter().map(|(c, v)| format!("{:.1},{:.1}", x_of(*c), y_of(*v))).collect();
        out.push_str(&format!("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" points=\"{}\"/>\n", s.colour, pts.join(" ")));
        for (c, v) in &s.points {
            out.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"/>\n", x_of(*c), y_of(*v), s.colour));
        }
        let ly = top + 10.0 + i as f64 * 22.0;
        let lx = left + plot_w + 16.0;
        out.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2.5\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            lx + 22.0,
            s.colour,
            lx + 28.0,
            ly + 4.0,
            esc(s.name)
        ));
    }
    out.push_str("</svg>\n");
    out
}
