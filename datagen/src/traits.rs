//! The traits a logged-in customer's `identify` events carry — city, gender, age, birthday,
//! member tier and consent flags — so that profiles and segments have something to select on
//! ("lives in Shanghai, gold member, opted in to SMS, birthday this week"). Drawn from a stream
//! of the customer's own, so that traits leave the rest of the generated data as it was.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Cities, with how many in 100 customers live there.
const CITIES: &[(&str, u32)] = &[
    ("Shanghai", 22),
    ("Beijing", 20),
    ("Shenzhen", 14),
    ("Guangzhou", 12),
    ("Hangzhou", 10),
    ("Chengdu", 9),
    ("Wuhan", 7),
    ("Nanjing", 6),
];

/// Member tiers, with how many in 100 customers hold them.
const TIERS: &[(&str, u32)] = &[("none", 50), ("silver", 30), ("gold", 15), ("platinum", 5)];

/// The year ages are counted from (the generated period is in 2026).
const YEAR: i32 = 2026;

fn weighted<'a>(rng: &mut impl Rng, choices: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (choice, weight) in choices {
        if pick < *weight {
            return choice;
        }
        pick -= weight;
    }
    choices[choices.len() - 1].0
}

/// Customer `customer`'s traits as a JSON object text, the same for the same `seed`.
pub fn customer_traits(seed: u64, customer: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ customer.wrapping_mul(0xd1b5_4a32_d192_ed03));
    let city = weighted(&mut rng, CITIES);
    let gender = weighted(&mut rng, &[("female", 55), ("male", 40), ("unknown", 5)]);
    let age: i32 = rng.random_range(18..=70);
    let month: u32 = rng.random_range(1..=12);
    let day: u32 = rng.random_range(1..=28);
    let tier = weighted(&mut rng, TIERS);
    let sms = rng.random_bool(0.6);
    let email = rng.random_bool(0.5);
    format!(
        r#"{{"city":"{city}","gender":"{gender}","age":{age},"birthday":"{}-{month:02}-{day:02}","member_tier":"{tier}","sms_opt_in":{sms},"email_opt_in":{email}}}"#,
        YEAR - age
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traits_are_json_deterministic_and_varied() {
        let first = customer_traits(42, 7);
        assert_eq!(first, customer_traits(42, 7));
        let value: serde_json::Value = serde_json::from_str(&first).expect("JSON");
        assert!(
            value["age"]
                .as_i64()
                .is_some_and(|a| (18..=70).contains(&a))
        );
        let cities: std::collections::HashSet<String> = (0..200)
            .map(|c| {
                let v: serde_json::Value = serde_json::from_str(&customer_traits(42, c)).unwrap();
                v["city"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(cities.len() >= 6, "{cities:?}");
    }
}
