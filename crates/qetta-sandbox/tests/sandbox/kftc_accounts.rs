//! KFTC business APIs: user/me, account/list, balance, transaction_list, unlink, cancel.

use std::collections::HashSet;

use chrono::{Duration, FixedOffset, Utc};
use serde_json::{json, Value};

use crate::common::*;

fn today_kst() -> chrono::NaiveDate {
    Utc::now().with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap()).date_naive()
}

#[tokio::test]
async fn user_me_and_account_list() {
    let sb = start().await;
    let t = sb.login("park", "login inquiry").await;
    let me = sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", t.user_seq_no.clone())]).await;
    assert_eq!(me["rsp_code"], "A0000");
    assert_eq!(me["rsp_message"], "");
    assert_eq!(me["api_tran_dtm"].as_str().unwrap().len(), 17);
    assert!(me["api_tran_id"].is_string());
    assert_eq!(me["user_name"], "박지훈");
    assert_eq!(me["user_ci"].as_str().unwrap().len(), 88);
    assert_eq!(me["res_cnt"], "4");
    let first = &me["res_list"][0];
    for f in [
        "fintech_use_num",
        "account_alias",
        "bank_code_std",
        "bank_code_sub",
        "bank_name",
        "savings_bank_name",
        "account_num_masked",
        "account_holder_name",
        "account_holder_type",
        "account_type",
        "inquiry_agree_yn",
        "inquiry_agree_dtime",
        "transfer_agree_yn",
        "transfer_agree_dtime",
    ] {
        assert!(first[f].is_string(), "{f} missing: {first}");
    }
    assert_eq!(first["bank_code_std"], "011");
    assert_eq!(first["inquiry_agree_yn"], "Y");
    assert_eq!(first["transfer_agree_yn"], "N");
    assert!(first["account_num_masked"].as_str().unwrap().ends_with("***"));
    assert_eq!(first["inquiry_agree_dtime"].as_str().unwrap().len(), 14);

    // Someone else's user_seq_no, a malformed one.
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", "1234567890".into())]).await["rsp_code"], "A0313");
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", "12".into())]).await["rsp_code"], "A0004");
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &[]).await["rsp_code"], "A0004");

    let list = |inc: &str, sort: &str| vec![("user_seq_no", t.user_seq_no.clone()), ("include_cancel_yn", inc.to_string()), ("sort_order", sort.to_string())];
    let l = sb.kftc_get("/v2.0/account/list", &t.access, &list("N", "A")).await;
    assert_eq!(l["rsp_code"], "A0000", "{l}");
    assert_eq!(l["res_cnt"], "4");
    assert_eq!(l["res_list"][0]["account_state"], "01");
    assert_eq!(sb.kftc_get("/v2.0/account/list", &t.access, &list("X", "A")).await["rsp_code"], "A0004");
    assert_eq!(sb.kftc_get("/v2.0/account/list", &t.access, &list("N", "Z")).await["rsp_code"], "A0004");
}

#[tokio::test]
async fn balance_matches_the_generated_data() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let users = sb.users().await;
    let kim = users["users"].as_array().unwrap().iter().find(|u| u["id"] == "kim").unwrap().clone();
    let mut overdrawn = 0;
    for a in kim["accounts"].as_array().unwrap() {
        let f = a["fintech_use_num"].as_str().unwrap();
        let b = sb.balance(&t.access, f).await;
        assert_eq!(b["rsp_code"], "A0000", "{b}");
        assert_eq!(b["bank_rsp_code"], "000");
        assert_eq!(b["bank_code_tran"], a["bank_code_std"]);
        assert_eq!(b["bank_tran_date"].as_str().unwrap().len(), 8);
        assert_eq!(b["balance_amt"], a["balance_amt"]);
        assert_eq!(b["fintech_use_num"], f);
        assert!(b["available_amt"].is_string() && b["product_name"].is_string() && b["last_tran_date"].is_string());
        if b["balance_amt"].as_str().unwrap().starts_with('-') {
            overdrawn += 1;
            assert_ne!(b["available_amt"], "0");
        }
    }
    assert_eq!(overdrawn, 1, "kim has an overdrawn overdraft line");
}

/// The default seed gives these exact values on any date (balances do not depend on the date).
#[tokio::test]
async fn default_seed_values_are_stable() {
    let a = start().await.users().await;
    let b = start().await.users().await;
    assert_eq!(a, b);
    let c = start_with(&[("QETTA_SANDBOX_SEED", "7")]).await.users().await;
    assert_ne!(a["users"][0]["user_seq_no"], c["users"][0]["user_seq_no"]);
    let ids: Vec<&str> = a["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["kim", "lee", "park", "choi"]);
}

#[tokio::test]
async fn bank_tran_id_rules() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let code = sb.sandbox.kftc_client_use_code();
    let bad = [
        format!("{code}U12345678"),         // too short
        format!("{code}U12345678a"),        // lower case
        format!("{code}X123456789"),        // no U
        "M999999999U123456789".to_string(), // someone else's prefix
        String::new(),
    ];
    for id in bad {
        let q = [("bank_tran_id", id.clone()), ("fintech_use_num", f.clone()), ("tran_dtime", "20260101120000".into())];
        let b = sb.kftc_get("/v2.0/account/balance/fin_num", &t.access, &q).await;
        assert_eq!(b["rsp_code"], "A0004", "{id}: {b}");
        assert_eq!(b["bank_tran_id"], id.as_str());
    }
    // Reuse on the same day → A0326, across APIs too.
    let id = sb.bank_tran_id();
    let q = [("bank_tran_id", id.clone()), ("fintech_use_num", f.clone()), ("tran_dtime", "20260101120000".into())];
    assert_eq!(sb.kftc_get("/v2.0/account/balance/fin_num", &t.access, &q).await["rsp_code"], "A0000");
    assert_eq!(sb.kftc_get("/v2.0/account/balance/fin_num", &t.access, &q).await["rsp_code"], "A0326");
    // A new day (KST) forgets yesterday's ids.
    sb.advance(86_400).await;
    assert_eq!(sb.kftc_get("/v2.0/account/balance/fin_num", &t.access, &q).await["rsp_code"], "A0000");
    // tran_dtime must be 14 digits.
    let q = [("bank_tran_id", sb.bank_tran_id()), ("fintech_use_num", f.clone()), ("tran_dtime", "2026".into())];
    assert_eq!(sb.kftc_get("/v2.0/account/balance/fin_num", &t.access, &q).await["rsp_code"], "A0004");
}

#[tokio::test]
async fn another_users_fintech_use_num_is_a0304() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let lee = sb.fintech("lee", 0).await;
    let b = sb.balance(&t.access, &lee).await;
    assert_eq!(b["rsp_code"], "A0304");
    let b = sb.balance(&t.access, "120260000199999999999999").await;
    assert_eq!(b["rsp_code"], "A0304");
    assert_eq!(sb.balance(&t.access, "short").await["rsp_code"], "A0004");
}

pub(crate) fn tx_query(sb: &TestSandbox, fintech: &str, from: &str, to: &str, kind: &str, sort: &str, cursor: Option<&str>) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("bank_tran_id", sb.bank_tran_id()),
        ("fintech_use_num", fintech.to_string()),
        ("inquiry_type", kind.to_string()),
        ("inquiry_base", "D".to_string()),
        ("from_date", from.to_string()),
        ("to_date", to.to_string()),
        ("sort_order", sort.to_string()),
        ("tran_dtime", "20260101120000".to_string()),
    ];
    if let Some(c) = cursor {
        q.push(("befor_inquiry_trace_info", c.to_string()));
    }
    q
}

async fn all_pages(sb: &TestSandbox, token: &str, fintech: &str, from: &str, to: &str, kind: &str, sort: &str) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = tx_query(sb, fintech, from, to, kind, sort, cursor.as_deref());
        let page = sb.kftc_get("/v2.0/account/transaction_list/fin_num", token, &q).await;
        assert_eq!(page["rsp_code"], "A0000", "{page}");
        assert_eq!(page["bank_rsp_code"], "000");
        let list = page["res_list"].as_array().unwrap().clone();
        assert!(list.len() <= 25);
        assert_eq!(page["page_record_cnt"], list.len().to_string());
        pages += 1;
        rows.extend(list);
        if page["next_page_yn"] == "N" {
            break;
        }
        assert_eq!(page["next_page_yn"], "Y");
        let c = page["befor_inquiry_trace_info"].as_str().unwrap().to_string();
        assert!(c.len() <= 20);
        cursor = Some(c);
        assert!(pages < 100);
    }
    (rows, pages)
}

#[tokio::test]
async fn transaction_list_pages_over_more_than_a_hundred_rows() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let today = today_kst();
    let from = (today - Duration::days(90)).format("%Y%m%d").to_string();
    let to = today.format("%Y%m%d").to_string();
    let (rows, pages) = all_pages(&sb, &t.access, &f, &from, &to, "A", "D").await;
    assert!(rows.len() > 100, "only {} rows", rows.len());
    assert!(pages >= 5);
    assert_eq!(pages, rows.len().div_ceil(25));
    // Newest first, all within range, no duplicates.
    let keys: Vec<String> = rows.iter().map(|r| format!("{}{}", r["tran_date"].as_str().unwrap(), r["tran_time"].as_str().unwrap())).collect();
    assert!(keys.windows(2).all(|w| w[0] >= w[1]));
    assert!(keys.iter().all(|k| k[..8] >= *from.as_str() && k[..8] <= *to.as_str()));
    let distinct: HashSet<String> = rows.iter().map(|r| r.to_string()).collect();
    assert_eq!(distinct.len(), rows.len());
    // The newest row's after_balance is the current balance.
    let bal = sb.balance(&t.access, &f).await;
    assert_eq!(rows[0]["after_balance_amt"], bal["balance_amt"]);
    for r in &rows {
        for k in ["tran_date", "tran_time", "inout_type", "tran_type", "print_content", "tran_amt", "after_balance_amt", "branch_name"] {
            assert!(r[k].is_string(), "{k}");
        }
    }
    // Ascending order gives the same rows reversed.
    let (asc, _) = all_pages(&sb, &t.access, &f, &from, &to, "A", "A").await;
    let mut rev = asc.clone();
    rev.reverse();
    assert_eq!(rev, rows);
    // Deposits + withdrawals = all.
    let (ins, _) = all_pages(&sb, &t.access, &f, &from, &to, "I", "D").await;
    let (outs, _) = all_pages(&sb, &t.access, &f, &from, &to, "O", "D").await;
    assert!(ins.iter().all(|r| r["inout_type"] == "입금"));
    assert!(outs.iter().all(|r| r["inout_type"] == "출금"));
    assert_eq!(ins.len() + outs.len(), rows.len());
    // Six months of history exist.
    let old_from = (today - Duration::days(200)).format("%Y%m%d").to_string();
    let old_to = (today - Duration::days(170)).format("%Y%m%d").to_string();
    let (old, _) = all_pages(&sb, &t.access, &f, &old_from, &old_to, "A", "A").await;
    assert!(!old.is_empty());
}

#[tokio::test]
async fn transaction_list_by_time_and_validation() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let day = (today_kst() - Duration::days(30)).format("%Y%m%d").to_string();
    let mut q = tx_query(&sb, &f, &day, &day, "A", "A", None);
    q[3].1 = "T".into();
    q.push(("from_time", "000000".into()));
    q.push(("to_time", "120000".into()));
    let page = sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &q).await;
    assert_eq!(page["rsp_code"], "A0000");
    assert!(page["res_list"].as_array().unwrap().iter().all(|r| r["tran_time"].as_str().unwrap() <= "120000"));
    // inquiry_base T without times → A0004.
    let mut q = tx_query(&sb, &f, &day, &day, "A", "A", None);
    q[3].1 = "T".into();
    assert_eq!(sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &q).await["rsp_code"], "A0004");
    // Bad values → A0004.
    for (i, v) in [(2usize, "X"), (3, "Q"), (4, "2026-01-01"), (6, "Z")] {
        let mut q = tx_query(&sb, &f, &day, &day, "A", "A", None);
        q[i].1 = v.into();
        assert_eq!(sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &q).await["rsp_code"], "A0004", "{v}");
    }
    // from > to.
    let later = (today_kst() - Duration::days(1)).format("%Y%m%d").to_string();
    let q = tx_query(&sb, &f, &later, &day, "A", "A", None);
    assert_eq!(sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &q).await["rsp_code"], "A0004");
    // A cursor must come from the same criteria.
    let from = (today_kst() - Duration::days(90)).format("%Y%m%d").to_string();
    let to = today_kst().format("%Y%m%d").to_string();
    let first = sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", None)).await;
    let cursor = first["befor_inquiry_trace_info"].as_str().unwrap().to_string();
    let q = tx_query(&sb, &f, &from, &to, "A", "A", Some(&cursor));
    assert_eq!(sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &q).await["rsp_code"], "A0004");
    let q = tx_query(&sb, &f, &from, &to, "A", "D", Some("garbage"));
    assert_eq!(sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &q).await["rsp_code"], "A0004");
    // No rows → an empty page.
    let future = (today_kst() + Duration::days(10)).format("%Y%m%d").to_string();
    let page = sb.kftc_get("/v2.0/account/transaction_list/fin_num", &t.access, &tx_query(&sb, &f, &future, &future, "A", "D", None)).await;
    assert_eq!(page["rsp_code"], "A0000");
    assert_eq!(page["page_record_cnt"], "0");
    assert_eq!(page["next_page_yn"], "N");
}

#[tokio::test]
async fn fixed_anchor_date_makes_transactions_exact() {
    let a = start_with(&[("QETTA_SANDBOX_DATA_ANCHOR_DATE", "20260301")]).await;
    let b = start_with(&[("QETTA_SANDBOX_DATA_ANCHOR_DATE", "20260301")]).await;
    let (ta, tb) = (a.login("lee", "login inquiry").await, b.login("lee", "login inquiry").await);
    let (fa, fb) = (a.fintech("lee", 0).await, b.fintech("lee", 0).await);
    assert_eq!(fa, fb);
    let (ra, _) = all_pages(&a, &ta.access, &fa, "20250801", "20260301", "A", "A").await;
    let (rb, _) = all_pages(&b, &tb.access, &fb, "20250801", "20260301", "A", "A").await;
    assert_eq!(ra, rb);
    assert!(ra.last().unwrap()["tran_date"].as_str().unwrap() < "20260301");
    // The salary arrives on the 25th.
    assert!(ra.iter().any(|r| r["tran_date"] == "20260225" && r["tran_type"] == "급여" && r["inout_type"] == "입금"));
}

#[tokio::test]
async fn unlink_revokes_every_token_of_the_user() {
    let sb = start().await;
    let t = sb.login("choi", "login inquiry").await;
    let other = sb.login("kim", "login").await;
    let code = sb.sandbox.kftc_client_use_code();
    let wrong = sb.kftc_post("/v2.0/user/unlink", &t.access, json!({"client_use_code": "M999999999", "user_seq_no": t.user_seq_no})).await;
    assert_eq!(wrong["rsp_code"], "A0004");
    let r = sb.kftc_post("/v2.0/user/unlink", &t.access, json!({"client_use_code": code, "user_seq_no": t.user_seq_no})).await;
    assert_eq!(r["rsp_code"], "A0000", "{r}");
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", t.user_seq_no.clone())]).await["rsp_code"], "O0002");
    assert_eq!(sb.refresh(&t.refresh, "login inquiry").await["rsp_code"], "O0014");
    // Other users are untouched; the user can consent again and keeps the same user_seq_no.
    assert_eq!(sb.kftc_get("/v2.0/user/me", &other.access, &[("user_seq_no", other.user_seq_no.clone())]).await["rsp_code"], "A0000");
    let again = sb.login("choi", "login").await;
    assert_eq!(again.user_seq_no, t.user_seq_no);
    // Malformed body.
    let resp: Value = sb
        .http
        .post(sb.kftc_url("/v2.0/user/unlink"))
        .bearer_auth(&again.access)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["rsp_code"], "A0004");
}

#[tokio::test]
async fn account_cancel_and_bank_side_errors() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 1).await;
    let body = |id: String| json!({"bank_tran_id": id, "scope": "inquiry", "fintech_use_num": f});
    let r = sb.kftc_post("/v2.0/account/cancel", &t.access, body(sb.bank_tran_id())).await;
    assert_eq!(r["rsp_code"], "A0000", "{r}");
    assert_eq!(r["bank_rsp_code"], "000");
    assert_eq!(r["bank_code_tran"], "088");
    // Again → A0002 + 551 (already cancelled).
    let r = sb.kftc_post("/v2.0/account/cancel", &t.access, body(sb.bank_tran_id())).await;
    assert_eq!(r["rsp_code"], "A0002");
    assert_eq!(r["bank_rsp_code"], "551");
    // Inquiries on the cancelled account fail at the bank.
    let b = sb.balance(&t.access, &f).await;
    assert_eq!(b["rsp_code"], "A0002");
    assert_eq!(b["bank_rsp_code"], "551");
    // The list hides it unless asked.
    let q = |inc: &str| vec![("user_seq_no", t.user_seq_no.clone()), ("include_cancel_yn", inc.to_string()), ("sort_order", "A".to_string())];
    assert_eq!(sb.kftc_get("/v2.0/account/list", &t.access, &q("N")).await["res_cnt"], "2");
    let all = sb.kftc_get("/v2.0/account/list", &t.access, &q("Y")).await;
    assert_eq!(all["res_cnt"], "3");
    assert!(all["res_list"].as_array().unwrap().iter().any(|a| a["fintech_use_num"] == f.as_str() && a["account_state"] == "09"));
    // Bad scope, bad bank_tran_id, transfer never agreed.
    let r = sb.kftc_post("/v2.0/account/cancel", &t.access, json!({"bank_tran_id": sb.bank_tran_id(), "scope": "oob", "fintech_use_num": f})).await;
    assert_eq!(r["rsp_code"], "A0004");
    let r = sb.kftc_post("/v2.0/account/cancel", &t.access, json!({"bank_tran_id": "x", "scope": "inquiry", "fintech_use_num": f})).await;
    assert_eq!(r["rsp_code"], "A0004");
    let f0 = sb.fintech("kim", 0).await;
    let r = sb.kftc_post("/v2.0/account/cancel", &t.access, json!({"bank_tran_id": sb.bank_tran_id(), "scope": "transfer", "fintech_use_num": f0})).await;
    assert_eq!(r["rsp_code"], "A0002");
    assert_eq!(r["bank_rsp_code"], "556");
    // Re-consenting registers the account again.
    let t2 = sb.login("kim", "login inquiry").await;
    assert_eq!(sb.balance(&t2.access, &f).await["rsp_code"], "A0000");
}

#[tokio::test]
async fn history_follows_the_sandbox_clock() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let before = sb.balance(&t.access, &f).await["balance_amt"].clone();
    sb.advance(40 * 86_400).await;
    let today = today_kst() + Duration::days(40);
    let from = (today - Duration::days(90)).format("%Y%m%d").to_string();
    let to = today.format("%Y%m%d").to_string();
    let (rows, _) = all_pages(&sb, &t.access, &f, &from, &to, "A", "D").await;
    assert!(rows.len() > 100);
    let newest = rows[0]["tran_date"].as_str().unwrap().to_string();
    assert!(newest >= (today - Duration::days(5)).format("%Y%m%d").to_string(), "newest {newest}");
    // Same accounts, same balance, registrations kept.
    assert_eq!(sb.balance(&t.access, &f).await["balance_amt"], before);
}

#[tokio::test]
async fn authorize_account_has_the_same_contract() {
    let sb = start().await;
    // SPEC A5.2: for an already registered user (see kftc_round2 for the refusal otherwise).
    sb.login("lee", "login inquiry").await;
    let mut p = sb.authorize_params("login inquiry");
    p.push(("sandbox_consent", "approve".into()));
    p.push(("sandbox_user", "lee".into()));
    let resp = sb.http.get(sb.kftc_url("/oauth/2.0/authorize_account")).query(&p).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let q = query_of(&location(&resp));
    assert!(sb.exchange(&q["code"]).await["access_token"].is_string());
}
