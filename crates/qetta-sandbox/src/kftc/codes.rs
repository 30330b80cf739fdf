//! KFTC response codes (SPEC A12) and the JSON shapes errors travel in.
//!
//! Every KFTC answer, errors included, is HTTP 200 with `rsp_code`/`rsp_message` (SPEC A1, A12.5):
//! gateway (`O…`) errors carry only those two fields; business (`A…`) errors carry the full
//! common header, and, on bank-relayed APIs, the bank part with empty values (or the bank's code
//! for `A0002`).

use serde_json::{json, Map, Value};

/// Korean message of a centre/gateway code (SPEC A12.1, A12.3).
pub fn message(code: &str) -> &'static str {
    match code {
        "A0000" => "",
        "O0001" => "인증 파라미터 오류",
        "O0002" => "Access Token 거부",
        "O0003" => "Access Token 만료",
        "O0004" => "API 접근 권한 없음",
        "O0005" => "허용되지 않은 API",
        "O0006" => "허용되지 않은 IP",
        "O0007" => "라우팅 실패",
        "O0008" => "사용량 초과(객체)",
        "O0009" => "사용량 초과(API)",
        "O0010" => "허용되지 않은 HTTP Method",
        "O0011" => "허용되지 않은 Scope 입니다.",
        "O0012" => "서비스 거부",
        "O0013" => "호출 횟수 초과",
        "O0014" => "Refresh Token 거부",
        "O0015" => "Refresh Token 만료",
        "A0001" => "처리중",
        "A0002" => "참가기관 에러",
        "A0003" => "내부 처리 에러",
        "A0004" => "요청전문 포맷 에러",
        "A0005" => "등록 데이터 에러",
        "A0006" => "전문 변환 에러",
        "A0007" => "처리 시간 초과",
        "A0008" => "중복 거래",
        "A0009" => "일부 처리 실패",
        "A0010" => "핀테크 앱 정보 확인 실패",
        "A0011" => "API 사용 권한 없음",
        "A0012" => "API 정보 확인 실패",
        "A0013" => "이용기관 서비스 불가",
        "A0014" => "탈퇴 이용기관",
        "A0015" => "시뮬레이션 응답전문 없음",
        "A0016" => "내부 전문 송신 실패",
        "A0017" => "참가기관 응답 시간 초과",
        "A0018" => "거래내역 없음",
        "A0019" => "이용기관 탈퇴 처리중",
        "A0020" => "조회 가능 시간이 아닙니다",
        "A0021" => "센터 지정 메시지",
        "A0304" => "핀테크이용번호 정보 불일치",
        "A0316" => "제3자정보제공동의 만료",
        "A0334" => "제3자정보제공동의 기간 만료",
        "A0313" => "사용자 불일치",
        "A0326" => "거래고유번호(참가기관) 중복",
        "A0337" => "해당 사용자 없음",
        _ => "오류",
    }
}

/// Codes a fault can be injected with (SPEC A12.1, A12.3), as `'static` strings.
pub const INJECTABLE: &[&str] = &[
    "O0001", "O0002", "O0003", "O0004", "O0005", "O0006", "O0007", "O0008", "O0009", "O0010", "O0011", "O0012", "O0013", "O0014", "O0015", "A0001", "A0002",
    "A0003", "A0004", "A0005", "A0006", "A0007", "A0008", "A0009", "A0010", "A0011", "A0012", "A0013", "A0014", "A0015", "A0016", "A0017", "A0018", "A0019",
    "A0020", "A0021", "A0304", "A0313", "A0316", "A0326", "A0334", "A0337",
];

/// The catalogue entry for `code`, if any.
pub fn known_code(code: &str) -> Option<&'static str> {
    INJECTABLE.iter().copied().find(|k| *k == code)
}

/// Message of a bank response code (SPEC A12.4).
pub fn bank_message(code: &str) -> &'static str {
    match code {
        "000" => "",
        "412" => "계좌없음",
        "415" => "해약계좌",
        "419" => "사고신고계좌",
        "420" => "거래정지계좌",
        "453" => "잔액부족",
        "467" => "휴면계좌",
        "468" => "제3자정보제공동의 만료",
        "499" => "기타",
        "551" => "기 해지 사용자",
        "555" => "해당 사용자 없음",
        "556" => "사용자 미등록",
        _ => "참가기관 오류",
    }
}

/// An error answer of the KFTC simulator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KftcError {
    /// Gateway/OAuth code (`O####`), optional bracketed detail (`[3000201]`, `[992]`).
    #[error("{code} {detail:?}")]
    Gateway { code: &'static str, detail: Option<String> },
    /// Centre business code (`A####`) with optional detail text.
    #[error("{code} {detail:?}")]
    Business { code: &'static str, detail: Option<String> },
    /// `A0002` with the participating bank's `bank_rsp_code`.
    #[error("A0002 bank {bank_rsp_code}")]
    Bank { bank_rsp_code: String },
}

impl KftcError {
    pub fn o0001(detail: &str) -> Self {
        KftcError::Gateway { code: "O0001", detail: Some(detail.to_string()) }
    }
    pub fn gateway(code: &'static str) -> Self {
        KftcError::Gateway { code, detail: None }
    }
    pub fn a0004(what: &str) -> Self {
        KftcError::Business { code: "A0004", detail: Some(what.to_string()) }
    }
    pub fn business(code: &'static str) -> Self {
        KftcError::Business { code, detail: None }
    }
    pub fn code(&self) -> &str {
        match self {
            KftcError::Gateway { code, .. } | KftcError::Business { code, .. } => code,
            KftcError::Bank { .. } => "A0002",
        }
    }
    /// `rsp_message` text, e.g. `인증 파라미터 오류([3000201])`.
    pub fn rsp_message(&self) -> String {
        match self {
            KftcError::Gateway { code, detail: Some(d) } | KftcError::Business { code, detail: Some(d) } => {
                format!("{}([{}])", message(code), d)
            }
            KftcError::Gateway { code, detail: None } | KftcError::Business { code, detail: None } => message(code).to_string(),
            KftcError::Bank { .. } => message("A0002").to_string(),
        }
    }
}

/// Context needed to render a business response.
pub struct Envelope<'a> {
    pub api_tran_id: String,
    pub api_tran_dtm: String,
    /// `Some` on bank-relayed APIs (balance, transaction list, cancel): the echoed bank_tran_id.
    pub bank_tran_id: Option<&'a str>,
    pub bank_tran_date: String,
    pub bank_code_tran: String,
}

impl Envelope<'_> {
    /// Success: the common header (+ bank part) merged into `body`.
    pub fn ok(&self, body: Value) -> Value {
        let mut m = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.header(&mut m, "A0000", "");
        if let Some(id) = self.bank_tran_id {
            m.insert("bank_tran_id".into(), json!(id));
            m.insert("bank_tran_date".into(), json!(self.bank_tran_date));
            m.insert("bank_code_tran".into(), json!(self.bank_code_tran));
            m.insert("bank_rsp_code".into(), json!("000"));
            m.insert("bank_rsp_message".into(), json!(""));
        }
        Value::Object(m)
    }

    /// Error body for `err` (gateway errors are minimal, SPEC A12.5).
    pub fn error(&self, err: &KftcError) -> Value {
        let mut m = Map::new();
        match err {
            KftcError::Gateway { .. } => {
                m.insert("rsp_code".into(), json!(err.code()));
                m.insert("rsp_message".into(), json!(err.rsp_message()));
            }
            KftcError::Business { .. } | KftcError::Bank { .. } => {
                self.header(&mut m, err.code(), &err.rsp_message());
                if let Some(id) = self.bank_tran_id {
                    let (date, tran, code, msg) = match err {
                        KftcError::Bank { bank_rsp_code } => {
                            (self.bank_tran_date.clone(), self.bank_code_tran.clone(), bank_rsp_code.clone(), bank_message(bank_rsp_code).to_string())
                        }
                        _ => (String::new(), String::new(), String::new(), String::new()),
                    };
                    m.insert("bank_tran_id".into(), json!(id));
                    m.insert("bank_tran_date".into(), json!(date));
                    m.insert("bank_code_tran".into(), json!(tran));
                    m.insert("bank_rsp_code".into(), json!(code));
                    m.insert("bank_rsp_message".into(), json!(msg));
                }
            }
        }
        Value::Object(m)
    }

    fn header(&self, m: &mut Map<String, Value>, code: &str, msg: &str) {
        m.insert("api_tran_id".into(), json!(self.api_tran_id));
        m.insert("api_tran_dtm".into(), json!(self.api_tran_dtm));
        m.insert("rsp_code".into(), json!(code));
        m.insert("rsp_message".into(), json!(msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(bank: Option<&str>) -> Envelope<'_> {
        Envelope {
            api_tran_id: "id".into(),
            api_tran_dtm: "20260101000000000".into(),
            bank_tran_id: bank,
            bank_tran_date: "20260101".into(),
            bank_code_tran: "004".into(),
        }
    }

    #[test]
    fn messages_carry_detail_codes() {
        assert_eq!(KftcError::o0001("3000201").rsp_message(), "인증 파라미터 오류([3000201])");
        assert_eq!(KftcError::gateway("O0002").rsp_message(), "Access Token 거부");
    }

    #[test]
    fn gateway_errors_are_minimal() {
        let v = env(Some("x")).error(&KftcError::gateway("O0003"));
        assert_eq!(v, json!({"rsp_code": "O0003", "rsp_message": "Access Token 만료"}));
    }

    #[test]
    fn bank_errors_fill_the_bank_part() {
        let v = env(Some("M202600001U000000001")).error(&KftcError::Bank { bank_rsp_code: "551".into() });
        assert_eq!(v["rsp_code"], "A0002");
        assert_eq!(v["bank_rsp_code"], "551");
        assert_eq!(v["bank_tran_id"], "M202600001U000000001");
        let ok = env(None).ok(json!({"user_name": "x"}));
        assert_eq!(ok["rsp_code"], "A0000");
        assert_eq!(ok["rsp_message"], "");
        assert!(ok.get("bank_rsp_code").is_none());
    }
}
