//! Deterministic sandbox users, accounts and transactions.
//!
//! Everything is derived from the configured `seed`:
//! * user ids, names and account line-up are fixed; `user_seq_no`, CI, account numbers,
//!   `fintech_use_num` and **current balances** come from the seed only, so tests can assert
//!   exact values whatever the date;
//! * transactions are generated backwards from an *anchor date* (the sandbox clock's KST date,
//!   re-read whenever that date changes, or a fixed `QETTA_SANDBOX_DATA_ANCHOR_DATE`), covering
//!   the 210 days before it (up to yesterday), so "the last 90 days" always has data. The transactions of a
//!   day depend only on (seed, account, date): when the anchor moves a day, the days already shown
//!   keep their transactions and one new day appears (what a transaction sync must see); salary on
//!   the 25th, card bills on the 14th, ... `after_balance_amt` is computed
//!   backwards from the fixed current balance; a deposit that would have left an ordinary
//!   account negative before it arrived is left out (salary accounts hold enough that paydays
//!   are never dropped).

use chrono::{Datelike, Duration, NaiveDate, NaiveTime};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// How many days of history every account gets (a little over six months).
pub const HISTORY_DAYS: i64 = 210;

#[derive(Clone, Debug)]
pub struct SandboxUser {
    /// Short id used by `sandbox_user=<id>`, `QETTA_SANDBOX_USER` and the consent page.
    pub id: String,
    pub name: String,
    pub name_en: String,
    pub user_seq_no: String,
    pub user_ci: String,
    pub accounts: Vec<Account>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Salary account with card bills, loan payments and daily spending (many transactions).
    Salary,
    /// Overdraft line (마이너스통장): negative balance, monthly interest.
    Overdraft,
    /// Instalment savings (적금): one deposit a month.
    Savings,
    /// Everyday secondary account: transfers and some spending.
    Secondary,
    /// Account that mostly services a loan: incoming transfer, loan repayment.
    LoanRepayment,
}

#[derive(Clone, Debug)]
pub struct Account {
    pub fintech_use_num: String,
    pub bank_code_std: String,
    pub bank_code_sub: String,
    pub bank_name: String,
    pub account_num: String,
    pub account_num_masked: String,
    pub account_alias: String,
    /// `1` 수시입출금, `2` 예적금 (SPEC A8).
    pub account_type: String,
    pub product_name: String,
    pub account_issue_date: NaiveDate,
    pub maturity_date: Option<NaiveDate>,
    pub profile: Profile,
    /// Ledger balance now (may be negative).
    pub balance_amt: i64,
    /// Overdraft limit (0 for ordinary accounts).
    pub overdraft_limit: i64,
    /// Oldest first.
    pub transactions: Vec<Transaction>,
}

impl Account {
    /// Withdrawable amount (N(12), never negative).
    pub fn available_amt(&self) -> i64 {
        if self.account_type == "2" {
            return 0; // instalment savings cannot be withdrawn before maturity
        }
        (self.balance_amt + self.overdraft_limit).max(0)
    }

    pub fn last_tran_date(&self) -> Option<NaiveDate> {
        self.transactions.last().map(|t| t.date)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub date: NaiveDate,
    pub time: NaiveTime,
    /// `입금` or `출금`.
    pub inout_type: &'static str,
    pub tran_type: &'static str,
    pub print_content: String,
    /// Unsigned amount.
    pub tran_amt: i64,
    pub after_balance_amt: i64,
    pub branch_name: &'static str,
}

impl Transaction {
    pub fn is_deposit(&self) -> bool {
        self.inout_type == "입금"
    }
}

struct BankInfo {
    code: &'static str,
    name: &'static str,
    /// Account number groups, e.g. [6, 2, 6].
    groups: &'static [usize],
}

const BANKS: &[BankInfo] = &[
    BankInfo { code: "003", name: "IBK기업은행", groups: &[3, 6, 2, 3] },
    BankInfo { code: "004", name: "KB국민은행", groups: &[6, 2, 6] },
    BankInfo { code: "011", name: "NH농협은행", groups: &[3, 4, 4, 2] },
    BankInfo { code: "020", name: "우리은행", groups: &[4, 3, 6] },
    BankInfo { code: "023", name: "SC제일은행", groups: &[3, 2, 6] },
    BankInfo { code: "081", name: "하나은행", groups: &[3, 6, 5] },
    BankInfo { code: "088", name: "신한은행", groups: &[3, 3, 6] },
    BankInfo { code: "089", name: "케이뱅크", groups: &[3, 3, 6] },
    BankInfo { code: "090", name: "카카오뱅크", groups: &[4, 2, 7] },
    BankInfo { code: "092", name: "토스뱅크", groups: &[4, 4, 4] },
];

fn bank(code: &str) -> &'static BankInfo {
    BANKS.iter().find(|b| b.code == code).unwrap_or(&BANKS[1])
}

/// Bank name for a standard bank code (empty if unknown).
pub fn bank_name(code: &str) -> &'static str {
    BANKS.iter().find(|b| b.code == code).map(|b| b.name).unwrap_or("")
}

struct AccountSpec {
    bank: &'static str,
    profile: Profile,
    product: &'static str,
    alias: &'static str,
    /// Balance range in KRW (current balance drawn from it).
    balance: (i64, i64),
    overdraft_limit: i64,
}

struct UserSpec {
    id: &'static str,
    name: &'static str,
    name_en: &'static str,
    employer: &'static str,
    salary: (i64, i64),
    accounts: &'static [AccountSpec],
}

const USERS: &[UserSpec] = &[
    UserSpec {
        id: "kim",
        name: "김민준",
        name_en: "Kim Minjun",
        employer: "한빛상사",
        salary: (3_400_000, 3_600_000),
        accounts: &[
            AccountSpec {
                bank: "004",
                profile: Profile::Salary,
                product: "KB Star*t통장",
                alias: "급여통장",
                balance: (4_300_000, 5_200_000),
                overdraft_limit: 0,
            },
            AccountSpec {
                bank: "088",
                profile: Profile::Overdraft,
                product: "신한 직장인 마이너스통장",
                alias: "마이너스통장",
                balance: (-4_200_000, -3_100_000),
                overdraft_limit: 10_000_000,
            },
            AccountSpec {
                bank: "090",
                profile: Profile::Savings,
                product: "카카오뱅크 자유적금",
                alias: "비상금 적금",
                balance: (2_400_000, 3_000_000),
                overdraft_limit: 0,
            },
        ],
    },
    UserSpec {
        id: "lee",
        name: "이서연",
        name_en: "Lee Seoyeon",
        employer: "서연디자인",
        salary: (2_700_000, 2_900_000),
        accounts: &[
            AccountSpec {
                bank: "020",
                profile: Profile::Salary,
                product: "우리 WON 통장",
                alias: "생활비",
                balance: (3_300_000, 3_900_000),
                overdraft_limit: 0,
            },
            AccountSpec {
                bank: "092",
                profile: Profile::Secondary,
                product: "토스뱅크 통장",
                alias: "토스뱅크",
                balance: (350_000, 700_000),
                overdraft_limit: 0,
            },
        ],
    },
    UserSpec {
        id: "park",
        name: "박지훈",
        name_en: "Park Jihoon",
        employer: "대한물류",
        salary: (3_000_000, 3_200_000),
        accounts: &[
            AccountSpec {
                bank: "011",
                profile: Profile::Salary,
                product: "NH올원e통장",
                alias: "월급통장",
                balance: (3_600_000, 4_300_000),
                overdraft_limit: 0,
            },
            AccountSpec {
                bank: "081",
                profile: Profile::LoanRepayment,
                product: "하나 주거래 통장",
                alias: "대출상환",
                balance: (150_000, 400_000),
                overdraft_limit: 0,
            },
            AccountSpec {
                bank: "003",
                profile: Profile::Savings,
                product: "IBK 청년 적금",
                alias: "적금",
                balance: (2_600_000, 3_200_000),
                overdraft_limit: 0,
            },
            AccountSpec {
                bank: "089",
                profile: Profile::Secondary,
                product: "케이뱅크 생활통장",
                alias: "생활통장",
                balance: (300_000, 600_000),
                overdraft_limit: 0,
            },
        ],
    },
    UserSpec {
        id: "choi",
        name: "최유진",
        name_en: "Choi Yujin",
        employer: "미래교육",
        salary: (2_500_000, 2_700_000),
        accounts: &[
            AccountSpec {
                bank: "023",
                profile: Profile::Salary,
                product: "SC제일 내지갑통장",
                alias: "주거래",
                balance: (3_000_000, 3_600_000),
                overdraft_limit: 0,
            },
            AccountSpec {
                bank: "088",
                profile: Profile::LoanRepayment,
                product: "신한 쏠편한 입출금",
                alias: "대출이자",
                balance: (80_000, 300_000),
                overdraft_limit: 0,
            },
        ],
    },
];

/// Sub-seed mixing (splitmix64) so every (seed, purpose, index) gets its own stream.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
}

fn round_to(v: i64, unit: i64) -> i64 {
    (v / unit) * unit
}

/// Generate the sandbox users. `client_use_code` feeds the `fintech_use_num` pattern (SPEC A3).
pub fn generate(seed: u64, client_use_code: &str, anchor: NaiveDate) -> Vec<SandboxUser> {
    let code_digits: String = {
        let d: String = client_use_code.chars().filter(char::is_ascii_digit).collect();
        let d = format!("{d:0>9}");
        d[d.len() - 9..].to_string()
    };
    USERS
        .iter()
        .enumerate()
        .map(|(ui, spec)| {
            let mut rng = StdRng::seed_from_u64(mix(seed, 1, ui as u64));
            let user_seq_no = format!("11{:08}", rng.gen_range(0..100_000_000u64));
            let ci_bytes: Vec<u8> = (0..64).map(|_| rng.gen()).collect();
            let user_ci = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ci_bytes);
            let salary = round_to(rng.gen_range(spec.salary.0..=spec.salary.1), 10);
            let accounts = spec
                .accounts
                .iter()
                .enumerate()
                .map(|(ai, a)| {
                    let mut arng = StdRng::seed_from_u64(mix(seed, 2, (ui * 16 + ai) as u64));
                    let info = bank(a.bank);
                    let raw: Vec<String> = info.groups.iter().map(|&n| digits(&mut arng, n)).collect();
                    let account_num = raw.concat();
                    let mut masked_groups = raw.clone();
                    if let Some(last) = masked_groups.last_mut() {
                        let keep = last.len().saturating_sub(3);
                        *last = format!("{}***", &last[..keep]);
                    }
                    let fintech_use_num = format!("1{code_digits}{}", digits(&mut arng, 14));
                    let balance_amt = round_to(arng.gen_range(a.balance.0..=a.balance.1), 10);
                    let issue_days = arng.gen_range(400..2500);
                    let account_issue_date = anchor_independent_issue_date(issue_days);
                    let maturity_date = (a.profile == Profile::Savings).then(|| account_issue_date.checked_add_signed(Duration::days(365 * 3))).flatten();
                    let mut acct = Account {
                        fintech_use_num,
                        bank_code_std: a.bank.to_string(),
                        bank_code_sub: format!("{}{}", a.bank, digits(&mut arng, 4)),
                        bank_name: info.name.to_string(),
                        account_num,
                        account_num_masked: masked_groups.join("-"),
                        account_alias: a.alias.to_string(),
                        account_type: if a.profile == Profile::Savings { "2".into() } else { "1".into() },
                        product_name: a.product.to_string(),
                        account_issue_date,
                        maturity_date,
                        profile: a.profile,
                        balance_amt,
                        overdraft_limit: a.overdraft_limit,
                        transactions: Vec::new(),
                    };
                    acct.transactions = history(seed, (ui * 16 + ai) as u64, &acct, spec.employer, salary, anchor);
                    acct
                })
                .collect();
            SandboxUser { id: spec.id.to_string(), name: spec.name.to_string(), name_en: spec.name_en.to_string(), user_seq_no, user_ci, accounts }
        })
        .collect()
}

/// Opening dates are fixed calendar dates (not relative to the anchor), so they are stable.
fn anchor_independent_issue_date(days_before_2026: i64) -> NaiveDate {
    let base = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    base.checked_sub_signed(Duration::days(days_before_2026)).unwrap_or(base)
}

/// One generated movement before balances are known: (deposit?, tran_type, memo, amount).
type Movement = (bool, &'static str, String, i64);

const PEOPLE: &[&str] = &["홍길동", "김지수", "박서준", "이하은", "정민호", "강예린", "윤도현", "한소희"];
const SHOPS: &[(&str, i64, i64)] = &[
    ("GS25", 2_000, 15_000),
    ("CU편의점", 2_000, 12_000),
    ("스타벅스", 4_500, 15_000),
    ("이마트", 20_000, 120_000),
    ("쿠팡", 9_900, 89_000),
    ("배달의민족", 15_000, 42_000),
    ("카카오T택시", 5_800, 28_000),
    ("올리브영", 8_000, 45_000),
    ("교보문고", 12_000, 38_000),
    ("CGV", 14_000, 30_000),
];
const BRANCHES: &[&str] = &["본점", "강남역지점", "여의도지점", "종로지점", "인터넷뱅킹", "모바일"];

fn movements_for_day(rng: &mut StdRng, acct: &Account, employer: &str, salary: i64, date: NaiveDate) -> Vec<Movement> {
    let mut out: Vec<Movement> = Vec::new();
    let day = date.day();
    let month = date.month();
    match acct.profile {
        Profile::Salary => {
            if day == 25 {
                out.push((true, "급여", format!("급여 {employer}"), salary));
            }
            if day == 1 {
                out.push((false, "자동이체", "월세".into(), 550_000));
            }
            if day == 5 {
                out.push((false, "자동이체", "관리비".into(), round_to(rng.gen_range(110_000..190_000), 10)));
            }
            if day == 14 {
                out.push((false, "자동이체", "KB국민카드".into(), round_to(rng.gen_range(650_000..1_050_000), 10)));
                out.push((false, "자동이체", "현대카드".into(), round_to(rng.gen_range(150_000..420_000), 10)));
            }
            if day == 17 {
                out.push((false, "대체", "학자금대출상환".into(), 187_340));
            }
            if day == 20 {
                out.push((false, "자동이체", "SKT통신요금".into(), round_to(rng.gen_range(48_000..79_000), 10)));
            }
            if day == 10 {
                out.push((false, "자동이체", "삼성생명보험료".into(), 89_000));
            }
            if day == 26 {
                out.push((false, "타행환", "적금이체".into(), 300_000));
            }
            if day == 21 && matches!(month, 3 | 6 | 9 | 12) {
                out.push((true, "이자", "예금이자".into(), rng.gen_range(80..900)));
            }
            // Daily life: usually one or two card/transfer movements.
            let n = match rng.gen_range(0..10) {
                0 => 0,
                1..=5 => 1,
                6..=8 => 2,
                _ => 3,
            };
            for _ in 0..n {
                match rng.gen_range(0..10) {
                    0 => {
                        let who = PEOPLE.choose(rng).copied().unwrap_or("홍길동");
                        out.push((true, "타행환", who.to_string(), round_to(rng.gen_range(10_000..150_000), 1000)));
                    }
                    1 => {
                        let who = PEOPLE.choose(rng).copied().unwrap_or("홍길동");
                        out.push((false, "타행환", format!("토스 {who}"), round_to(rng.gen_range(10_000..120_000), 1000)));
                    }
                    2 => out.push((false, "현금", "ATM출금".into(), round_to(rng.gen_range(1..6), 1) * 50_000)),
                    _ => {
                        let (shop, lo, hi) = SHOPS.choose(rng).copied().unwrap_or(("GS25", 1000, 2000));
                        out.push((false, "체크카드", shop.to_string(), round_to(rng.gen_range(lo..hi), 100)));
                    }
                }
            }
        }
        Profile::Overdraft => {
            if day == 28 {
                // monthly interest on the used line (about 6.9% a year)
                let used = (-acct.balance_amt).max(0);
                out.push((false, "이자", "대출이자".into(), used * 69 / 1000 / 12));
            }
            if day == 3 && rng.gen_bool(0.5) {
                out.push((false, "타행환", "카드대금부족분".into(), round_to(rng.gen_range(100_000..400_000), 10_000)));
            }
            if day == 27 && rng.gen_bool(0.6) {
                out.push((true, "타행환", "급여통장이체".into(), round_to(rng.gen_range(100_000..300_000), 10_000)));
            }
        }
        Profile::Savings => {
            if day == 26 {
                out.push((true, "타행환", "적금이체".into(), 300_000));
            }
            if day == 31 || (day == 30 && month == 4) {
                out.push((true, "이자", "적금이자".into(), rng.gen_range(300..2_500)));
            }
        }
        Profile::Secondary => {
            if day == 2 || day == 16 {
                out.push((true, "타행환", "생활비이체".into(), round_to(rng.gen_range(80_000..200_000), 10_000)));
            }
            if rng.gen_bool(0.35) {
                let (shop, lo, hi) = SHOPS.choose(rng).copied().unwrap_or(("GS25", 1000, 2000));
                out.push((false, "체크카드", shop.to_string(), round_to(rng.gen_range(lo..hi), 100)));
            }
            if day == 12 {
                out.push((false, "자동이체", "넷플릭스".into(), 13_500));
            }
        }
        Profile::LoanRepayment => {
            if day == 24 {
                out.push((true, "타행환", "대출상환금이체".into(), 700_000));
            }
            if day == 25 {
                out.push((false, "대체", "주택담보대출원리금".into(), 612_480));
            }
            if day == 8 {
                out.push((false, "대체", "신용대출이자".into(), round_to(rng.gen_range(60_000..95_000), 10)));
            }
            if rng.gen_bool(0.08) {
                let (shop, lo, hi) = SHOPS.choose(rng).copied().unwrap_or(("GS25", 1000, 2000));
                out.push((false, "체크카드", shop.to_string(), round_to(rng.gen_range(lo..hi), 100)));
            }
        }
    }
    out
}

fn history(seed: u64, account_key: u64, acct: &Account, employer: &str, salary: i64, anchor: NaiveDate) -> Vec<Transaction> {
    // Oldest first. Each calendar day has its own RNG stream (stable when the anchor moves).
    let mut raw: Vec<(NaiveDate, NaiveTime, Movement, &'static str)> = Vec::new();
    for n in (1..=HISTORY_DAYS).rev() {
        let Some(date) = anchor.checked_sub_signed(Duration::days(n)) else { continue };
        let mut rng = StdRng::seed_from_u64(mix(seed, 3 + account_key, date.num_days_from_ce() as u64));
        let moves = movements_for_day(&mut rng, acct, employer, salary, date);
        let mut times: Vec<u32> = moves.iter().map(|_| rng.gen_range(7 * 3600..23 * 3600)).collect();
        times.sort_unstable();
        for (m, secs) in moves.into_iter().zip(times) {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap_or_default();
            let branch = BRANCHES.choose(&mut rng).copied().unwrap_or("본점");
            raw.push((date, time, m, branch));
        }
    }
    // Balances backwards from the fixed current balance.
    let mut after = acct.balance_amt;
    let mut txs: Vec<Transaction> = Vec::with_capacity(raw.len());
    // Walking backwards, a deposit lowers the earlier balance; one that would leave the account
    // below zero (or beyond its overdraft limit) before it arrived is dropped, so ordinary
    // accounts never show a negative balance.
    let floor = -acct.overdraft_limit;
    for (date, time, (deposit, tran_type, memo, amount), branch) in raw.into_iter().rev() {
        if deposit && after - amount < floor {
            continue;
        }
        txs.push(Transaction {
            date,
            time,
            inout_type: if deposit { "입금" } else { "출금" },
            tran_type,
            print_content: memo,
            tran_amt: amount,
            after_balance_amt: after,
            branch_name: branch,
        });
        after = if deposit { after - amount } else { after + amount };
    }
    txs.reverse();
    txs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(7, "M202600001", anchor());
        let b = generate(7, "M202600001", anchor());
        let c = generate(8, "M202600001", anchor());
        assert_eq!(a[0].user_seq_no, b[0].user_seq_no);
        assert_eq!(a[0].accounts[0].transactions, b[0].accounts[0].transactions);
        assert_ne!(a[0].user_seq_no, c[0].user_seq_no);
    }

    #[test]
    fn balances_do_not_depend_on_the_anchor() {
        let a = generate(7, "M202600001", anchor());
        let b = generate(7, "M202600001", NaiveDate::from_ymd_opt(2027, 8, 2).unwrap());
        for (ua, ub) in a.iter().zip(&b) {
            assert_eq!(ua.user_seq_no, ub.user_seq_no);
            for (x, y) in ua.accounts.iter().zip(&ub.accounts) {
                assert_eq!(x.balance_amt, y.balance_amt);
                assert_eq!(x.fintech_use_num, y.fintech_use_num);
            }
        }
    }

    #[test]
    fn shapes_and_invariants() {
        for seed in [1u64, 2026, 99] {
            for anchor in [anchor(), NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(), NaiveDate::from_ymd_opt(2027, 2, 28).unwrap()] {
                let users = generate(seed, "M202600001", anchor);
                assert!(users.len() >= 3);
                let mut overdrawn = 0;
                for u in &users {
                    assert_eq!(u.user_seq_no.len(), 10);
                    assert_eq!(u.user_ci.len(), 88);
                    assert!((2..=4).contains(&u.accounts.len()));
                    for a in &u.accounts {
                        assert_eq!(a.fintech_use_num.len(), 24);
                        assert!(a.fintech_use_num.starts_with("1202600001"));
                        assert!(a.account_num_masked.ends_with("***"));
                        assert_eq!(a.bank_code_sub.len(), 7);
                        if a.balance_amt < 0 {
                            overdrawn += 1;
                            assert!(a.available_amt() > 0);
                        }
                        // running balance is consistent
                        let mut prev: Option<i64> = None;
                        for t in &a.transactions {
                            if let Some(p) = prev {
                                let expect = if t.is_deposit() { p + t.tran_amt } else { p - t.tran_amt };
                                assert_eq!(t.after_balance_amt, expect);
                            }
                            prev = Some(t.after_balance_amt);
                            assert!(t.tran_amt > 0);
                            assert!(t.date < anchor);
                        }
                        assert_eq!(a.transactions.last().map(|t| t.after_balance_amt), Some(a.balance_amt));
                        if a.profile != Profile::Overdraft {
                            let min = a.transactions.iter().map(|t| t.after_balance_amt).min().unwrap_or(0);
                            assert!(min >= 0, "{} {} went negative: {min}", u.id, a.bank_name);
                        }
                    }
                }
                assert!(overdrawn >= 1);
                // No salary is ever dropped by the balance floor: one per month of history.
                for u in &users {
                    let a = &u.accounts[0];
                    assert_eq!(a.profile, Profile::Salary);
                    let salaries = a.transactions.iter().filter(|t| t.tran_type == "급여").count();
                    let paydays = (1..=HISTORY_DAYS).filter(|n| (anchor - Duration::days(*n)).day() == 25).count();
                    assert_eq!(salaries, paydays, "{} at {anchor}", u.id);
                }
                // The salary account of the first user has several pages in the last 90 days.
                let since = anchor - Duration::days(90);
                let recent = users[0].accounts[0].transactions.iter().filter(|t| t.date >= since).count();
                assert!(recent > 100, "only {recent} transactions in 90 days");
                // Six months of history.
                let first = users[0].accounts[0].transactions.first().unwrap().date;
                assert!(anchor - first >= Duration::days(180));
            }
        }
    }
}
