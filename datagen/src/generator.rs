//! The synthetic CDP data set.
//!
//! Each customer has one to three anonymous devices; about 60% log in and get a user id, a
//! phone and an email, and some a WeChat OpenID. Customers have sessions spread over the period;
//! a session walks a commerce funnel with drop-off (page_view → product_view → add_to_cart →
//! checkout → purchase) mixed with other events (search, coupon_claim, wechat_follow, email_open,
//! email_click). About 2% of events share the previous event's timestamp (ties), purchases carry
//! revenue, and every purchase is also an order. A few phones are released and re-bound to
//! another customer, and a few cashier placeholder phones (`00000000000`) appear, as in real
//! data. At 100k customers this is about 5 million events.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use tributary_catalog::builtin::{EventRow, EventsBuilder};

use crate::error::{Error, Result};
use crate::purchase_history::purchase_history;
use crate::traits::customer_traits;

/// Rows buffered before a batch is written.
const BATCH_ROWS: usize = 65_536;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// 2026-01-01T00:00:00Z in microseconds since the epoch.
const PERIOD_START_MICROS: i64 = 1_767_225_600 * MICROS_PER_SECOND;

const FUNNEL: [&str; 5] = [
    "page_view",
    "product_view",
    "add_to_cart",
    "checkout",
    "purchase",
];
/// Chance to go on from each funnel step to the next.
const FUNNEL_CONTINUE: [f64; 4] = [0.7, 0.45, 0.55, 0.65];
const OTHER_EVENTS: [&str; 5] = [
    "search",
    "coupon_claim",
    "wechat_follow",
    "email_open",
    "email_click",
];
const SOURCES: [&str; 5] = ["web", "ios", "android", "wechat_miniprogram", "email"];
const PLACEHOLDER_PHONE: &str = "00000000000";

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Number of customers (people).
    pub customers: u64,
    /// Random seed: the same seed gives the same data.
    pub seed: u64,
    /// Length of the period the events fall in.
    pub days: u32,
    /// Days of purchase history before the period starts (0: none): each customer's purchases
    /// as a shop sees them over years (see [`crate::purchase_history`]).
    pub history_days: u32,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            customers: 10_000,
            seed: 42,
            days: 30,
            history_days: 0,
        }
    }
}

/// Rows written per file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Rows of `events.parquet`.
    pub events: u64,
    /// Rows of `identities.parquet`.
    pub identities: u64,
    /// Rows of `orders.parquet`.
    pub orders: u64,
    /// Rows of `identity_truth.parquet`.
    pub truth: u64,
}

fn ts_type() -> DataType {
    tributary_catalog::builtin::timestamp_type()
}

/// Columns of `events.parquet`: the built-in `events` table's.
pub fn events_schema() -> SchemaRef {
    tributary_catalog::builtin::events_schema()
}

/// Columns of `identities.parquet`: the built-in `identities` table's.
pub fn identities_schema() -> SchemaRef {
    tributary_catalog::builtin::identities_schema()
}

/// Columns of `identity_truth.parquet`: which person each identifier of `identities.parquet`
/// really belongs to (placeholder phones belong to no one), for the identity benchmark.
pub fn truth_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
        Field::new("person", DataType::Utf8, false),
    ]))
}

/// Columns of `orders.parquet`.
pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("anonymous_id", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("items", DataType::Int32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("placed_at", ts_type(), false),
    ]))
}

/// One Parquet file being written in batches.
struct Sink {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    rows: u64,
}

impl Sink {
    fn create(dir: &Path, name: &str, schema: SchemaRef) -> Result<Self> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties))?;
        Ok(Self {
            writer,
            schema,
            rows: 0,
        })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.rows += batch.num_rows() as u64;
        self.writer.write(&batch)?;
        Ok(())
    }

    fn close(self) -> Result<u64> {
        self.writer.close()?;
        Ok(self.rows)
    }
}

/// The columns built so far; the builders start over empty.
fn finish_all(builders: &mut [StringBuilder]) -> Vec<ArrayRef> {
    builders
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect()
}

/// The generator's events, with its fixed arrival delay and JSON columns always present.
#[derive(Default)]
struct EventRows {
    builder: EventsBuilder,
    len: usize,
}

impl EventRows {
    #[allow(clippy::too_many_arguments)] // one argument per column of the row
    fn push(
        &mut self,
        message_id: &str,
        kind: &str,
        event: Option<&str>,
        anonymous_id: &str,
        user_id: Option<&str>,
        timestamp: i64,
        source: &str,
        properties: &str,
        context: &str,
    ) {
        self.builder.push(EventRow {
            message_id,
            kind,
            event,
            anonymous_id: Some(anonymous_id),
            user_id,
            timestamp,
            received_at: timestamp + 150_000,
            source,
            properties: Some(properties),
            context: Some(context),
        });
        self.len += 1;
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        self.builder.finish().columns().to_vec()
    }
}

#[derive(Default)]
struct IdentityRows {
    id_type: StringBuilder,
    id_value: StringBuilder,
    linked_type: StringBuilder,
    linked_value: StringBuilder,
    source: StringBuilder,
    observed_at: TimestampMicrosecondBuilder,
    action: StringBuilder,
    len: usize,
}

impl IdentityRows {
    #[allow(clippy::too_many_arguments)] // one argument per column of the row
    fn push(
        &mut self,
        id: (&str, &str),
        linked: (&str, &str),
        source: &str,
        at: i64,
        action: &str,
    ) {
        self.id_type.append_value(id.0);
        self.id_value.append_value(id.1);
        self.linked_type.append_value(linked.0);
        self.linked_value.append_value(linked.1);
        self.source.append_value(source);
        self.observed_at.append_value(at);
        self.action.append_value(action);
        self.len += 1;
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        vec![
            Arc::new(self.id_type.finish()),
            Arc::new(self.id_value.finish()),
            Arc::new(self.linked_type.finish()),
            Arc::new(self.linked_value.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.observed_at.finish().with_timezone("UTC")),
            Arc::new(self.action.finish()),
        ]
    }
}

#[derive(Default)]
struct OrderRows {
    order_id: StringBuilder,
    user_id: StringBuilder,
    anonymous_id: StringBuilder,
    amount: Float64Builder,
    currency: StringBuilder,
    items: Int32Builder,
    source: StringBuilder,
    placed_at: TimestampMicrosecondBuilder,
    len: usize,
}

impl OrderRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        order_id: &str,
        user_id: Option<&str>,
        device: &str,
        amount: f64,
        items: i32,
        source: &str,
        placed_at: i64,
    ) {
        self.order_id.append_value(order_id);
        self.user_id.append_option(user_id);
        self.anonymous_id.append_value(device);
        self.amount.append_value(amount);
        self.currency.append_value("CNY");
        self.items.append_value(items);
        self.source.append_value(source);
        self.placed_at.append_value(placed_at);
        self.len += 1;
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        vec![
            Arc::new(self.order_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.items.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.placed_at.finish().with_timezone("UTC")),
        ]
    }
}

/// Writes the data set into `out_dir` (created if missing); `on_customer` is called after each
/// customer, for progress.
pub fn generate(
    config: &GenerateConfig,
    out_dir: &Path,
    mut on_customer: impl FnMut(u64),
) -> Result<GenerateSummary> {
    if config.customers == 0 || config.days == 0 {
        return Err(Error::InvalidConfig(
            "customers and days must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io {
        path: out_dir.display().to_string(),
        source,
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut events_sink = Sink::create(out_dir, "events.parquet", events_schema())?;
    let mut identities_sink = Sink::create(out_dir, "identities.parquet", identities_schema())?;
    let mut orders_sink = Sink::create(out_dir, "orders.parquet", orders_schema())?;
    let mut truth_sink = Sink::create(out_dir, "identity_truth.parquet", truth_schema())?;
    let mut truth: [StringBuilder; 3] = Default::default();
    let mut truth_len = 0usize;
    let mut events = EventRows::default();
    let mut identities = IdentityRows::default();
    let mut orders = OrderRows::default();
    let period_micros = i64::from(config.days) * MICROS_PER_DAY;
    let mut message_seq: u64 = 0;
    let mut order_seq: u64 = 0;

    for customer in 0..config.customers {
        let devices: Vec<String> = (0..rng.random_range(1..=3))
            .map(|d| format!("anon-{customer:08}-{d}"))
            .collect();
        let logs_in = rng.random_bool(0.6);
        let user_id = logs_in.then(|| format!("u{customer:08}"));
        let home_source = SOURCES[rng.random_range(0..SOURCES.len())];
        if let Some(user) = &user_id {
            let first_seen = PERIOD_START_MICROS + rng.random_range(0..period_micros);
            for device in &devices {
                identities.push(
                    ("anonymous_id", device),
                    ("user_id", user),
                    home_source,
                    first_seen,
                    "bind",
                );
            }
            let person = format!("p{customer:08}");
            let mut owned: Vec<(&str, String, String)> = devices
                .iter()
                .map(|d| ("anonymous_id", d.clone(), person.clone()))
                .collect();
            owned.push(("user_id", user.clone(), person.clone()));
            // 0.5% of all customers (60% log in) share the cashiers' placeholder phone.
            let phone = if rng.random_bool(0.0083) {
                PLACEHOLDER_PHONE.to_string()
            } else {
                format!("1{:010}", customer.wrapping_mul(7919) % 10_000_000_000)
            };
            identities.push(
                ("user_id", user),
                ("phone", &phone),
                "crm",
                first_seen,
                "bind",
            );
            identities.push(
                ("user_id", user),
                ("email", &format!("{user}@example.com")),
                "crm",
                first_seen,
                "bind",
            );
            owned.push(("email", format!("{user}@example.com"), person.clone()));
            let phone_owner = owned.len();
            if phone != PLACEHOLDER_PHONE {
                owned.push(("phone", phone.clone(), person.clone()));
            }
            if rng.random_bool(0.3) {
                let openid = format!(
                    "oWx{:012x}",
                    customer.wrapping_mul(0x9e37_79b9) & 0xffff_ffff_ffff
                );
                identities.push(
                    ("wechat_openid", &openid),
                    ("user_id", user),
                    "wechat_miniprogram",
                    first_seen,
                    "bind",
                );
                owned.push(("wechat_openid", openid.clone(), person.clone()));
            }
            if rng.random_bool(0.01) && customer > 0 {
                // The phone is released and re-bound to another member later.
                let later = first_seen + rng.random_range(MICROS_PER_DAY..=2 * MICROS_PER_DAY);
                let other = format!("u{:08}", rng.random_range(0..customer));
                identities.push(("user_id", user), ("phone", &phone), "crm", later, "unbind");
                identities.push(
                    ("user_id", &other),
                    ("phone", &phone),
                    "crm",
                    later + 1,
                    "bind",
                );
                // The phone now belongs to the other member (and so does their user id).
                let other_person = format!("p{}", &other[1..]);
                if let Some(entry) = owned.get_mut(phone_owner).filter(|e| e.0 == "phone") {
                    entry.2 = other_person.clone();
                }
                owned.push(("user_id", other.clone(), other_person));
            }
            for (id_type, id_value, owner) in owned {
                truth[0].append_value(id_type);
                truth[1].append_value(id_value);
                truth[2].append_value(owner);
                truth_len += 1;
            }
            if truth_len >= BATCH_ROWS {
                truth_sink.write(finish_all(&mut truth))?;
                truth_len = 0;
            }
        }

        let traits = customer_traits(config.seed, customer);
        let sessions = rng.random_range(8..=22);
        for _ in 0..sessions {
            let device = &devices[rng.random_range(0..devices.len())];
            let source = if rng.random_bool(0.7) {
                home_source
            } else {
                SOURCES[rng.random_range(0..SOURCES.len())]
            };
            let context = format!(r#"{{"channel":"{source}","device_id":"{device}"}}"#);
            let mut ts = PERIOD_START_MICROS + rng.random_range(0..period_micros);
            let logged_in_session = user_id.is_some() && rng.random_bool(0.7);
            let session_user = if logged_in_session {
                user_id.as_deref()
            } else {
                None
            };
            let next_id = |seq: &mut u64| {
                *seq += 1;
                format!("m{:011}", *seq)
            };
            let step_gap = |rng: &mut ChaCha8Rng| -> i64 {
                if rng.random_bool(0.02) {
                    0
                } else {
                    rng.random_range(1..=600) * MICROS_PER_SECOND
                }
            };
            if logged_in_session {
                events.push(
                    &next_id(&mut message_seq),
                    "identify",
                    None,
                    device,
                    session_user,
                    ts,
                    source,
                    &traits,
                    &context,
                );
            }
            let sku = format!("sku-{}", rng.random_range(1..=500));
            let mut depth = 0;
            while depth + 1 < FUNNEL.len() && rng.random_bool(FUNNEL_CONTINUE[depth]) {
                depth += 1;
            }
            for (step, name) in FUNNEL.iter().enumerate().take(depth + 1) {
                ts += step_gap(&mut rng);
                let properties = match step {
                    0 => format!(r#"{{"path":"/p/{}"}}"#, rng.random_range(1..=50)),
                    4 => {
                        order_seq += 1;
                        let revenue = f64::from(rng.random_range(500..=50_000)) / 100.0;
                        let items = rng.random_range(1..=5);
                        let order_id = format!("o{order_seq:010}");
                        orders.push(&order_id, session_user, device, revenue, items, source, ts);
                        format!(
                            r#"{{"sku":"{sku}","revenue":{revenue},"order_id":"{order_id}","items":{items}}}"#
                        )
                    }
                    _ => format!(r#"{{"sku":"{sku}"}}"#),
                };
                events.push(
                    &next_id(&mut message_seq),
                    "track",
                    Some(name),
                    device,
                    session_user,
                    ts,
                    source,
                    &properties,
                    &context,
                );
                if rng.random_bool(0.25) {
                    ts += step_gap(&mut rng);
                    let other = OTHER_EVENTS[rng.random_range(0..OTHER_EVENTS.len())];
                    events.push(
                        &next_id(&mut message_seq),
                        "track",
                        Some(other),
                        device,
                        session_user,
                        ts,
                        source,
                        "{}",
                        &context,
                    );
                }
            }
        }
        if config.history_days > 0 {
            let end = PERIOD_START_MICROS;
            let start = end - i64::from(config.history_days) * MICROS_PER_DAY;
            let device = &devices[0];
            let context = format!(r#"{{"channel":"{home_source}","device_id":"{device}"}}"#);
            // A stream of its own, so that a history leaves the other data as without one.
            let mut history_rng = ChaCha8Rng::seed_from_u64(
                config.seed ^ customer.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            for purchase in purchase_history(&mut history_rng, start, end) {
                order_seq += 1;
                let order_id = format!("o{order_seq:010}");
                let (user, at) = (user_id.as_deref(), purchase.at);
                orders.push(
                    &order_id,
                    user,
                    device,
                    purchase.revenue,
                    1,
                    home_source,
                    at,
                );
                let properties = format!(
                    r#"{{"revenue":{},"order_id":"{order_id}","items":1}}"#,
                    purchase.revenue
                );
                message_seq += 1;
                events.push(
                    &format!("m{message_seq:011}"),
                    "track",
                    Some("purchase"),
                    device,
                    user_id.as_deref(),
                    purchase.at,
                    home_source,
                    &properties,
                    &context,
                );
            }
        }
        if events.len >= BATCH_ROWS {
            events_sink.write(events.finish())?;
        }
        if identities.len >= BATCH_ROWS {
            identities_sink.write(identities.finish())?;
        }
        if orders.len >= BATCH_ROWS {
            orders_sink.write(orders.finish())?;
        }
        on_customer(customer + 1);
    }
    events_sink.write(events.finish())?;
    identities_sink.write(identities.finish())?;
    truth_sink.write(finish_all(&mut truth))?;
    orders_sink.write(orders.finish())?;
    Ok(GenerateSummary {
        events: events_sink.close()?,
        identities: identities_sink.close()?,
        truth: truth_sink.close()?,
        orders: orders_sink.close()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_bytes(dir: &Path) -> Vec<Vec<u8>> {
        [
            "events.parquet",
            "identities.parquet",
            "orders.parquet",
            "identity_truth.parquet",
        ]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect()
    }

    #[test]
    fn same_seed_same_data_and_plausible_shape() {
        let config = GenerateConfig {
            customers: 200,
            seed: 7,
            days: 30,
            history_days: 0,
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let summary = generate(&config, a.path(), |_| {}).unwrap();
        generate(&config, b.path(), |_| {}).unwrap();
        assert_eq!(file_bytes(a.path()), file_bytes(b.path()));
        // About 50 events per customer (5M at 100k customers).
        let per_customer = summary.events as f64 / 200.0;
        assert!(
            (35.0..=70.0).contains(&per_customer),
            "{per_customer} events per customer"
        );
        assert!(summary.orders > 0 && summary.identities > 0, "{summary:?}");
    }

    #[test]
    fn a_history_adds_years_of_purchases_before_the_period_end() {
        let base = GenerateConfig {
            customers: 300,
            seed: 7,
            days: 30,
            history_days: 0,
        };
        let with_history = GenerateConfig {
            history_days: 730,
            ..base.clone()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plain = generate(&base, a.path(), |_| {}).unwrap();
        let shop = generate(&with_history, b.path(), |_| {}).unwrap();
        // At least one purchase per customer, each also an order; nothing else changes.
        assert!(shop.events >= plain.events + 300, "{plain:?} {shop:?}");
        assert_eq!(shop.events - plain.events, shop.orders - plain.orders);
        assert_eq!(shop.identities, plain.identities);
    }

    #[test]
    fn zero_customers_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = GenerateConfig {
            customers: 0,
            ..Default::default()
        };
        assert!(matches!(
            generate(&config, dir.path(), |_| {}),
            Err(Error::InvalidConfig(_))
        ));
    }
}
