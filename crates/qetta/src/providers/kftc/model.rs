//! KFTC response bodies as the client reads them (SPEC A2, A6, A8–A11). Every number is a JSON
//! string; fields KFTC may omit default to empty.

use serde::Deserialize;

/// `rsp_code`/`rsp_message` and the bank part, present on every business response. Read on its
/// own before the typed body, and tolerant of `null` and of numbers where strings are expected,
/// so that an odd field in an error answer never hides its real code.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Envelope {
    #[serde(deserialize_with = "lenient_string")]
    pub api_tran_id: String,
    #[serde(deserialize_with = "lenient_string")]
    pub rsp_code: String,
    #[serde(deserialize_with = "lenient_string")]
    pub rsp_message: String,
    #[serde(deserialize_with = "lenient_opt_string")]
    pub bank_rsp_code: Option<String>,
    #[serde(deserialize_with = "lenient_opt_string")]
    pub bank_rsp_message: Option<String>,
}

/// A string, or `""` for `null`, or the text of a number or boolean.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_opt_string(d)?.unwrap_or_default())
}

fn lenient_opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        // An object or array where a code belongs tells nothing.
        _ => None,
    })
}

impl Envelope {
    /// Success means A0000 and, for bank-relayed calls, bank code 000 (SPEC A2).
    pub fn is_success(&self) -> bool {
        self.rsp_code == "A0000" && self.bank_rsp_code.as_deref().is_none_or(|c| c.is_empty() || c == "000")
    }
}

/// Token endpoint success (SPEC A6.2); errors come as an envelope with `rsp_code`.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub user_seq_no: Option<String>,
}

/// One registered account (`res_list` of user/me and account/list, SPEC A8).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AccountItem {
    pub fintech_use_num: String,
    pub account_alias: String,
    pub bank_code_std: String,
    pub bank_name: String,
    pub savings_bank_name: String,
    pub account_num_masked: String,
    pub account_holder_name: String,
    pub account_type: String,
    pub inquiry_agree_yn: String,
    pub transfer_agree_yn: String,
    pub account_state: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct UserMe {
    pub user_seq_no: String,
    pub user_name: String,
    pub res_cnt: String,
    pub res_list: Vec<AccountItem>,
}

/// `GET /v2.0/account/list` (SPEC A9).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct AccountList {
    pub user_name: String,
    pub res_cnt: String,
    pub res_list: Vec<AccountItem>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Balance {
    pub bank_name: String,
    pub savings_bank_name: String,
    pub fintech_use_num: String,
    pub balance_amt: String,
    pub available_amt: String,
    pub account_type: String,
    pub product_name: String,
    pub account_issue_date: String,
    pub maturity_date: String,
    pub last_tran_date: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct TransactionItem {
    pub tran_date: String,
    pub tran_time: String,
    pub inout_type: String,
    pub tran_type: String,
    pub print_content: String,
    pub tran_amt: String,
    pub after_balance_amt: String,
    pub branch_name: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct TransactionPage {
    pub bank_name: String,
    pub fintech_use_num: String,
    pub balance_amt: String,
    pub page_record_cnt: String,
    pub next_page_yn: String,
    pub befor_inquiry_trace_info: String,
    pub res_list: Vec<TransactionItem>,
}

/// Parses a KFTC amount string (`SN`/`N`): optional `-`, digits; empty means absent.
pub fn amount(s: &str) -> Result<Option<i64>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 18 {
        return Err(format!("{s:?} is not an amount"));
    }
    let v: i64 = digits.parse().map_err(|_| format!("{s:?} is not an amount"))?;
    Ok(Some(if neg { -v } else { v }))
}

#[cfg(test)]
mod tests {
    use super::amount;

    #[test]
    fn amounts_parse_from_strings() {
        assert_eq!(amount("1000000"), Ok(Some(1_000_000)));
        assert_eq!(amount("-35000"), Ok(Some(-35_000)));
        assert_eq!(amount("000120"), Ok(Some(120)));
        assert_eq!(amount(""), Ok(None));
        assert!(amount("12a").is_err());
        assert!(amount("-").is_err());
    }
}
