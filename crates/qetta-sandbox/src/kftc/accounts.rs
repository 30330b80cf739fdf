//! `/v2.0` business APIs: user/me (A8), account/list (A9), balance (A10), transaction_list
//! (A11), user/unlink and account/cancel (A7).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::codes::KftcError;
use super::data::{Account, SandboxUser, Transaction};
use super::oauth::{authenticate, Caller};
use super::{KftcSim, KftcState, Registration};
use crate::clock::kst;
use crate::config::{ConsentExpiredCode, KftcQuirks};

/// Records per transaction-list page (SPEC A11.2).
pub const PAGE_SIZE: usize = 25;

type Query = HashMap<String, String>;

fn query(q: &Option<String>) -> Query {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let mut m = HashMap::new();
    for (k, v) in pairs {
        m.entry(k).or_insert(v);
    }
    m
}

/// A required parameter; missing or empty → A0004.
fn req<'a>(q: &'a Query, key: &str) -> Result<&'a str, KftcError> {
    q.get(key).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| KftcError::a0004(key))
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn reply(sim: &KftcSim, bank_tran_id: Option<&str>, bank_code: &str, r: Result<Value, KftcError>) -> Response {
    let env = sim.envelope(bank_tran_id, bank_code);
    match r {
        Ok(body) => Json(env.ok(body)).into_response(),
        Err(e) => Json(env.error(&e)).into_response(),
    }
}

fn dtime(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.with_timezone(&kst()).format("%Y%m%d%H%M%S").to_string()).unwrap_or_default()
}

fn yn(b: bool) -> &'static str {
    if b {
        "Y"
    } else {
        "N"
    }
}

fn caller_user<'a>(st: &'a KftcState, caller: &Caller) -> Result<&'a SandboxUser, KftcError> {
    caller.user_id.as_deref().and_then(|id| st.user(id)).ok_or(KftcError::gateway("O0011"))
}

fn check_user_seq_no(user: &SandboxUser, given: &str) -> Result<(), KftcError> {
    if !is_digits(given, 10) {
        return Err(KftcError::a0004("user_seq_no"));
    }
    if given != user.user_seq_no {
        // SPEC is silent on the code for another user's user_seq_no; A0313 (사용자 불일치).
        return Err(KftcError::business("A0313"));
    }
    Ok(())
}

/// With the `nulls` quirk, empty text fields of an account item are JSON `null`.
fn nulls_for_empty(mut v: Value, quirks: KftcQuirks) -> Value {
    if quirks.nulls {
        if let Value::Object(m) = &mut v {
            for val in m.values_mut().filter(|x| x.as_str() == Some("")) {
                *val = Value::Null;
            }
        }
    }
    v
}

fn account_item(a: &Account, holder: &str, r: &Registration, with_state: bool) -> Value {
    let mut v = json!({
        "fintech_use_num": a.fintech_use_num,
        "account_alias": a.account_alias,
        "bank_code_std": a.bank_code_std,
        "bank_code_sub": a.bank_code_sub,
        "bank_name": a.bank_name,
        "savings_bank_name": "",
        "account_num_masked": a.account_num_masked,
        "account_seq": "",
        "account_holder_name": holder,
        "account_holder_type": "P",
        "account_type": a.account_type,
        "inquiry_agree_yn": yn(r.inquiry_active()),
        "inquiry_agree_dtime": if r.inquiry_active() { dtime(r.inquiry_agreed_at) } else { String::new() },
        "transfer_agree_yn": yn(r.transfer_active()),
        "transfer_agree_dtime": if r.transfer_active() { dtime(r.transfer_agreed_at) } else { String::new() },
        "payer_num": "",
    });
    if with_state {
        v["account_state"] = json!(r.account_state());
    }
    v
}

/// Registered accounts of a user, in registration order.
fn registered<'a>(st: &'a KftcState, user: &'a SandboxUser) -> Vec<(&'a Account, &'a Registration)> {
    st.links
        .get(&user.id)
        .map(|regs| regs.iter().filter_map(|r| user.accounts.iter().find(|a| a.fintech_use_num == r.fintech_use_num).map(|a| (a, r))).collect())
        .unwrap_or_default()
}

pub async fn user_me(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = query(&q);
    let r = (|| {
        let caller = authenticate(&sim, &headers, "login")?;
        let st = sim.state();
        let user = caller_user(&st, &caller)?;
        check_user_seq_no(user, req(&q, "user_seq_no")?)?;
        let list: Vec<Value> = registered(&st, user)
            .into_iter()
            .filter(|(_, r)| r.account_state() == "01")
            .map(|(a, r)| nulls_for_empty(account_item(a, &user.name, r, false), st.quirks))
            .collect();
        Ok(json!({
            "user_seq_no": user.user_seq_no,
            "user_ci": user.user_ci,
            "user_name": user.name,
            "res_cnt": list.len().to_string(),
            "res_list": list,
            "inquiry_card_cnt": "0",
            "inquiry_card_list": [],
            "inquiry_pay_cnt": "0",
            "inquiry_pay_list": [],
            "inquiry_insurance_cnt": "0",
            "inquiry_insurance_list": [],
            "inquiry_loan_cnt": "0",
            "inquiry_loan_list": [],
        }))
    })();
    reply(&sim, None, "", r)
}

pub async fn account_list(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = query(&q);
    let r = (|| {
        let caller = authenticate(&sim, &headers, "login")?;
        let st = sim.state();
        let user = caller_user(&st, &caller)?;
        check_user_seq_no(user, req(&q, "user_seq_no")?)?;
        let include_cancel = match req(&q, "include_cancel_yn")? {
            "Y" => true,
            "N" => false,
            _ => return Err(KftcError::a0004("include_cancel_yn")),
        };
        let descending = match req(&q, "sort_order")? {
            "D" => true,
            "A" => false,
            _ => return Err(KftcError::a0004("sort_order")),
        };
        let mut items: Vec<(usize, &Account, &Registration)> = registered(&st, user)
            .into_iter()
            .enumerate()
            .filter(|(_, (_, r))| include_cancel || r.account_state() == "01")
            .map(|(i, (a, r))| (i, a, r))
            .collect();
        items.sort_by_key(|(i, _, r)| (r.registered_at, *i));
        if descending {
            items.reverse();
        }
        let list: Vec<Value> = items.into_iter().map(|(_, a, r)| nulls_for_empty(account_item(a, &user.name, r, true), st.quirks)).collect();
        Ok(json!({
            "user_name": user.name,
            "res_cnt": list.len().to_string(),
            "res_list": list,
        }))
    })();
    reply(&sim, None, "", r)
}

/// SPEC A3: `client_use_code` (10) + `U` + 9 × `[0-9A-Z]`.
fn check_bank_tran_id(sim: &KftcSim, id: &str) -> Result<(), KftcError> {
    let b = id.as_bytes();
    let ok = b.len() == 20
        && id.is_char_boundary(10)
        && &id[..10] == sim.client_use_code()
        && b[10] == b'U'
        && b[11..].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(KftcError::a0004("bank_tran_id"))
    }
}

/// Record a bank_tran_id for today (KST); a reuse on the same day → A0326.
fn claim_bank_tran_id(sim: &KftcSim, st: &mut KftcState, id: &str) -> Result<(), KftcError> {
    let today = sim.clock.today_kst();
    if st.bank_tran_ids.0 != today {
        st.bank_tran_ids = (today, Default::default());
    }
    if !st.bank_tran_ids.1.insert(id.to_string()) {
        return Err(KftcError::business("A0326"));
    }
    Ok(())
}

fn check_tran_dtime(q: &Query) -> Result<(), KftcError> {
    let t = req(q, "tran_dtime")?;
    if !is_digits(t, 14) || NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%S").is_err() {
        return Err(KftcError::a0004("tran_dtime"));
    }
    Ok(())
}

/// Find the caller's account with inquiry registration (A0304 if not the caller's account) and
/// a consent that has not expired (SPEC A13: A0316/A0334 or bank 468, as configured).
fn inquiry_account<'a>(sim: &KftcSim, st: &'a KftcState, caller: &Caller, fintech_use_num: &str) -> Result<&'a Account, KftcError> {
    if fintech_use_num.len() != 24 || !fintech_use_num.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KftcError::a0004("fintech_use_num"));
    }
    let user = caller_user(st, caller)?;
    let account = user.accounts.iter().find(|a| a.fintech_use_num == fintech_use_num).ok_or(KftcError::business("A0304"))?;
    let reg = st.links.get(&user.id).and_then(|regs| regs.iter().find(|r| r.fintech_use_num == fintech_use_num));
    match reg {
        None => Err(KftcError::Bank { bank_rsp_code: "556".into() }), // 사용자 미등록
        Some(r) if r.inquiry_cancelled => Err(KftcError::Bank { bank_rsp_code: "551".into() }), // 기 해지
        Some(r) if !r.inquiry_active() => Err(KftcError::Bank { bank_rsp_code: "556".into() }),
        Some(r) if r.inquiry_consent_expired(sim.clock.now(), sim.config.consent_ttl_secs) => Err(match st.consent_code {
            ConsentExpiredCode::A0316 => KftcError::business("A0316"),
            ConsentExpiredCode::A0334 => KftcError::business("A0334"),
            ConsentExpiredCode::Bank468 => KftcError::Bank { bank_rsp_code: "468".into() },
        }),
        Some(_) => Ok(account),
    }
}

fn fmt_date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%Y%m%d").to_string()).unwrap_or_else(|| "00000000".into())
}

pub async fn balance(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = query(&q);
    let bank_tran_id = q.get("bank_tran_id").cloned().unwrap_or_default();
    let mut bank_code = String::new();
    let r = (|| {
        let caller = authenticate(&sim, &headers, "inquiry")?;
        check_bank_tran_id(&sim, req(&q, "bank_tran_id")?)?;
        let fintech = req(&q, "fintech_use_num")?;
        check_tran_dtime(&q)?;
        let mut st = sim.state();
        claim_bank_tran_id(&sim, &mut st, &bank_tran_id)?;
        let a = inquiry_account(&sim, &st, &caller, fintech)?;
        bank_code = a.bank_code_std.clone();
        Ok(json!({
            "bank_name": a.bank_name,
            "savings_bank_name": if st.quirks.nulls { Value::Null } else { json!("") },
            "fintech_use_num": a.fintech_use_num,
            "balance_amt": a.balance_amt.to_string(),
            "available_amt": a.available_amt().to_string(),
            "account_type": a.account_type,
            "product_name": a.product_name,
            "account_issue_date": fmt_date(Some(a.account_issue_date)),
            "maturity_date": fmt_date(a.maturity_date),
            "last_tran_date": fmt_date(a.last_tran_date()),
        }))
    })();
    if let Err(KftcError::Bank { .. }) = &r {
        bank_code = bank_code_of(&sim, q.get("fintech_use_num").map(String::as_str).unwrap_or(""));
    }
    reply(&sim, Some(&bank_tran_id), &bank_code, r)
}

fn bank_code_of(sim: &KftcSim, fintech_use_num: &str) -> String {
    let st = sim.state();
    st.users.iter().flat_map(|u| &u.accounts).find(|a| a.fintech_use_num == fintech_use_num).map(|a| a.bank_code_std.clone()).unwrap_or_default()
}

/// Criteria of a transaction-list query; the cursor is bound to them.
struct TxCriteria {
    fintech: String,
    inquiry_type: char,
    from: NaiveDateTime,
    to: NaiveDateTime,
    descending: bool,
}

impl TxCriteria {
    fn parse(q: &Query) -> Result<Self, KftcError> {
        let fintech = req(q, "fintech_use_num")?.to_string();
        let inquiry_type = match req(q, "inquiry_type")? {
            "A" => 'A',
            "I" => 'I',
            "O" => 'O',
            _ => return Err(KftcError::a0004("inquiry_type")),
        };
        let by_time = match req(q, "inquiry_base")? {
            "D" => false,
            "T" => true,
            _ => return Err(KftcError::a0004("inquiry_base")),
        };
        let date = |k: &str| -> Result<NaiveDate, KftcError> {
            let v = req(q, k)?;
            if !is_digits(v, 8) {
                return Err(KftcError::a0004(k));
            }
            NaiveDate::parse_from_str(v, "%Y%m%d").map_err(|_| KftcError::a0004(k))
        };
        let time = |k: &str| -> Result<NaiveTime, KftcError> {
            let v = req(q, k)?;
            if !is_digits(v, 6) {
                return Err(KftcError::a0004(k));
            }
            NaiveTime::parse_from_str(v, "%H%M%S").map_err(|_| KftcError::a0004(k))
        };
        let (from_d, to_d) = (date("from_date")?, date("to_date")?);
        let (from_t, to_t) =
            if by_time { (time("from_time")?, time("to_time")?) } else { (NaiveTime::MIN, NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)) };
        let (from, to) = (from_d.and_time(from_t), to_d.and_time(to_t));
        if from > to {
            return Err(KftcError::a0004("from_date > to_date"));
        }
        let descending = match req(q, "sort_order")? {
            "D" => true,
            "A" => false,
            _ => return Err(KftcError::a0004("sort_order")),
        };
        Ok(Self { fintech, inquiry_type, from, to, descending })
    }

    fn fingerprint(&self) -> String {
        let s = format!("{}|{}|{}|{}|{}", self.fintech, self.inquiry_type, self.from, self.to, self.descending);
        hex::encode_upper(&Sha256::digest(s.as_bytes())[..6])
    }

    /// A new `befor_inquiry_trace_info` (AN(20), opaque) for the rows from `offset`, remembered
    /// with the criteria and the time it was handed out.
    fn cursor(&self, st: &mut KftcState, offset: usize, now: DateTime<Utc>, ttl_secs: i64) -> String {
        if st.traces.len() > 100_000 {
            st.traces.retain(|_, (_, _, at)| *at + chrono::Duration::seconds(ttl_secs) > now);
        }
        let value: String = super::oauth::random_alnum(20).to_ascii_uppercase();
        st.traces.insert(value.clone(), (self.fingerprint(), offset, now));
        value
    }

    /// The offset of a trace value this sandbox handed out for the same criteria, if it is not
    /// older than the trace lifetime. SPEC A11.3 describes the value only for the next page; what
    /// KFTC answers for an old or unknown one is not documented [U]: we answer A0004 naming the
    /// field, as for any other malformed parameter.
    fn parse_cursor(&self, st: &KftcState, c: &str, now: DateTime<Utc>, ttl_secs: i64) -> Result<usize, KftcError> {
        let bad = || KftcError::a0004("befor_inquiry_trace_info");
        let (fp, offset, at) = st.traces.get(c).ok_or_else(bad)?;
        if *fp != self.fingerprint() || *at + chrono::Duration::seconds(ttl_secs) <= now {
            return Err(bad());
        }
        Ok(*offset)
    }

    fn matches(&self, t: &Transaction) -> bool {
        let at = t.date.and_time(t.time);
        let kind = match self.inquiry_type {
            'I' => t.is_deposit(),
            'O' => !t.is_deposit(),
            _ => true,
        };
        kind && at >= self.from && at <= self.to
    }
}

pub async fn transaction_list(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = query(&q);
    let bank_tran_id = q.get("bank_tran_id").cloned().unwrap_or_default();
    let mut bank_code = String::new();
    let r = (|| {
        let caller = authenticate(&sim, &headers, "inquiry")?;
        check_bank_tran_id(&sim, req(&q, "bank_tran_id")?)?;
        let crit = TxCriteria::parse(&q)?;
        check_tran_dtime(&q)?;
        let now = sim.clock.now();
        let mut st = sim.state();
        let offset = match q.get("befor_inquiry_trace_info").filter(|v| !v.is_empty()) {
            Some(c) => crit.parse_cursor(&st, c, now, sim.config.trace_ttl_secs)?,
            None => 0,
        };
        claim_bank_tran_id(&sim, &mut st, &bank_tran_id)?;
        let quirks = st.quirks;
        let a = inquiry_account(&sim, &st, &caller, &crit.fintech)?;
        bank_code = a.bank_code_std.clone();
        let mut rows: Vec<&Transaction> = a.transactions.iter().filter(|t| crit.matches(t)).collect();
        if crit.descending {
            rows.reverse();
        }
        // No matching rows: SPEC A11.3 allows A0018 or an empty page; an empty page unless the
        // `no_history_a0018` quirk is on.
        if rows.is_empty() && quirks.no_history_a0018 {
            return Err(KftcError::business("A0018"));
        }
        let page: Vec<Value> = rows.iter().enumerate().skip(offset).take(PAGE_SIZE).map(|(i, t)| row_json(t, i, quirks)).collect();
        let next_offset = offset.saturating_add(page.len());
        let more = next_offset < rows.len();
        let (bank_name, fintech, balance) = (a.bank_name.clone(), a.fintech_use_num.clone(), a.balance_amt.to_string());
        let trace = crit.cursor(&mut st, next_offset, now, sim.config.trace_ttl_secs);
        Ok(json!({
            "bank_name": bank_name,
            "savings_bank_name": if quirks.nulls { Value::Null } else { json!("") },
            "fintech_use_num": fintech,
            "balance_amt": balance,
            "page_record_cnt": page.len().to_string(),
            "next_page_yn": yn(more),
            "befor_inquiry_trace_info": trace,
            "res_list": page,
        }))
    })();
    if let Err(KftcError::Bank { .. }) = &r {
        bank_code = bank_code_of(&sim, q.get("fintech_use_num").map(String::as_str).unwrap_or(""));
    }
    reply(&sim, Some(&bank_tran_id), &bank_code, r)
}

/// One `res_list` row (SPEC A11.2), with the configured bank quirks applied. `i` is the row's
/// position in the whole answer, so a quirk hits the same rows on every page.
fn row_json(t: &Transaction, i: usize, quirks: KftcQuirks) -> Value {
    let (mut inout, mut amount) = (t.inout_type, t.tran_amt.to_string());
    if quirks.odd_rows {
        // SPEC A11.2: `지급` (paid out) is a withdrawal; `기타` (other) rows carry tran_amt 0.
        if i % 7 == 3 && !t.is_deposit() {
            inout = "지급";
        }
        if i % 11 == 5 {
            inout = "기타";
            amount = "0".into();
        }
    }
    let after = if quirks.empty_after_balance { String::new() } else { t.after_balance_amt.to_string() };
    let text = |s: &str| if quirks.nulls && s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "tran_date": t.date.format("%Y%m%d").to_string(),
        "tran_time": t.time.format("%H%M%S").to_string(),
        "inout_type": inout,
        "tran_type": t.tran_type,
        "print_content": t.print_content,
        "tran_amt": amount,
        "after_balance_amt": after,
        // With the `nulls` quirk every branch name is null (banks leave it out; SPEC A11.2).
        "branch_name": if quirks.nulls { Value::Null } else { text(t.branch_name) },
    })
}

fn json_body(sim: &KftcSim, headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Map<String, Value>, KftcError> {
    if !super::oauth::content_type_ok(headers, "application/json", sim.config.require_charset) {
        return Err(KftcError::a0004("Content-Type (application/json; charset=UTF-8)"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(KftcError::a0004("request body")),
    }
}

fn body_str<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, KftcError> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| KftcError::a0004(key))
}

/// `POST /v2.0/user/unlink` (사용자연결동의 해제, SPEC A7).
pub async fn unlink(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, body: Bytes) -> Response {
    leave(&sim, &headers, &body)
}

/// `POST /v2.0/user/close` (서비스 해지, SPEC A7): same body as unlink. SPEC gives no
/// difference the simulator could show beyond the name, so both end the link the same way.
pub async fn close(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, body: Bytes) -> Response {
    leave(&sim, &headers, &body)
}

fn leave(sim: &KftcSim, headers: &HeaderMap, body: &Bytes) -> Response {
    let r = (|| {
        let caller = authenticate(sim, headers, "login")?;
        let m = json_body(sim, headers, body)?;
        let code = body_str(&m, "client_use_code")?;
        let seq = body_str(&m, "user_seq_no")?;
        if code != sim.client_use_code() {
            return Err(KftcError::a0004("client_use_code"));
        }
        let mut st = sim.state();
        let user = caller_user(&st, &caller)?;
        check_user_seq_no(user, seq)?;
        let user_id = user.id.clone();
        // Registrations go, every token of the user stops working.
        st.links.remove(&user_id);
        for t in st.access.values_mut().filter(|t| t.user_id.as_deref() == Some(&user_id)) {
            t.revoked = true;
        }
        for t in st.refresh.values_mut().filter(|t| t.user_id == user_id) {
            t.revoked = true;
        }
        for c in st.codes.values_mut().filter(|c| c.user_id == user_id) {
            c.used = true;
        }
        // SPEC A7 does not list the response fields beyond the header; we echo the request.
        Ok(json!({ "client_use_code": code, "user_seq_no": seq }))
    })();
    reply(sim, None, "", r)
}

pub async fn cancel(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = json_body(&sim, &headers, &body);
    let bank_tran_id = parsed.as_ref().ok().and_then(|m| m.get("bank_tran_id")).and_then(Value::as_str).unwrap_or("").to_string();
    let mut bank_code = String::new();
    let r = (|| {
        let caller = authenticate(&sim, &headers, "login")?;
        let m = parsed.clone()?;
        check_bank_tran_id(&sim, body_str(&m, "bank_tran_id")?)?;
        let scope = body_str(&m, "scope")?;
        if scope != "inquiry" && scope != "transfer" {
            return Err(KftcError::a0004("scope"));
        }
        let mut st = sim.state();
        claim_bank_tran_id(&sim, &mut st, &bank_tran_id)?;
        let user = caller_user(&st, &caller)?;
        let account = if let Ok(f) = body_str(&m, "fintech_use_num") {
            user.accounts.iter().find(|a| a.fintech_use_num == f).ok_or(KftcError::business("A0304"))?
        } else {
            let bank = body_str(&m, "bank_code_std")?;
            let num = body_str(&m, "account_num")?;
            user.accounts
                .iter()
                .find(|a| a.bank_code_std == bank && a.account_num == num.replace('-', ""))
                .ok_or(KftcError::Bank { bank_rsp_code: "555".into() })?
        };
        bank_code = account.bank_code_std.clone();
        let (user_id, fintech) = (user.id.clone(), account.fintech_use_num.clone());
        let reg = st
            .links
            .get_mut(&user_id)
            .and_then(|regs| regs.iter_mut().find(|r| r.fintech_use_num == fintech))
            .ok_or(KftcError::Bank { bank_rsp_code: "556".into() })?;
        let (agreed, cancelled) = if scope == "inquiry" {
            (reg.inquiry_agreed_at.is_some(), &mut reg.inquiry_cancelled)
        } else {
            (reg.transfer_agreed_at.is_some(), &mut reg.transfer_cancelled)
        };
        if !agreed {
            return Err(KftcError::Bank { bank_rsp_code: "556".into() });
        }
        if *cancelled {
            return Err(KftcError::Bank { bank_rsp_code: "551".into() });
        }
        *cancelled = true;
        Ok(json!({}))
    })();
    reply(&sim, Some(&bank_tran_id), &bank_code, r)
}
