//! `tributary profile` (a customer's 360 view) and `tributary forget` (erase a person), both
//! over Flight SQL with the same statements any client can run (docs/identity.md).

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::FormatOptions;
use arrow::util::pretty::pretty_format_batches_with_options;
use clap::Args;

use crate::commands::client::{Client, ConnectArgs};
use crate::error::{Error, Result};
use tributary_engine::sql_text::string_literal;

/// Options of `tributary profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Where the server is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Identifier type: user_id, anonymous_id, phone, email, wechat_openid...
    pub id_type: String,
    /// Identifier value.
    pub id_value: String,
    /// How many of the latest events to show.
    #[arg(long, default_value_t = 20)]
    pub events: u32,
}

/// Options of `tributary forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Where the server is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Identifier type of any of the person's identifiers.
    pub id_type: String,
    /// Identifier value.
    pub id_value: String,
}

fn print(title: &str, batches: &[RecordBatch]) -> Result<()> {
    println!("{title}");
    let options = FormatOptions::default().with_null("NULL");
    println!("{}", pretty_format_batches_with_options(batches, &options)?);
    Ok(())
}

fn first_text(batches: &[RecordBatch], column: &str) -> Option<String> {
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let values = cast(batch.column_by_name(column)?, &DataType::Utf8).ok()?;
    let values = values.as_any().downcast_ref::<StringArray>()?;
    values.is_valid(0).then(|| values.value(0).to_string())
}

/// Runs `tributary profile`: identities, profile and recent journey of one customer.
pub async fn profile(args: ProfileArgs) -> Result<()> {
    let mut client = Client::connect(&args.connect).await?;
    let (id_type, value) = (
        string_literal(&args.id_type),
        string_literal(&args.id_value),
    );
    let (_, identities) = client
        .query(&format!(
            "SELECT customer_id, id_type, id_value FROM customer_identities({id_type}, {value})"
        ))
        .await?;
    let Some(customer) = first_text(&identities, "customer_id") else {
        return Err(Error::BadInput(format!(
            "{} '{}' belongs to no customer (unknown, or a blocked value)",
            args.id_type, args.id_value
        )));
    };
    println!("Customer {customer}\n");
    print("Identities", &identities)?;
    let (_, profile) = client
        .query(&format!(
            "SELECT first_seen, last_seen, event_count, purchase_count, last_purchase_at, \
             total_revenue, traits FROM customer_profile({id_type}, {value})"
        ))
        .await?;
    print("\nProfile", &profile)?;
    let (_, journey) = client
        .query(&format!(
            "SELECT timestamp, type, event, source, anonymous_id, user_id, properties \
             FROM customer_journey({id_type}, {value}, {})",
            args.events.max(1)
        ))
        .await?;
    print(
        &format!("\nJourney (latest {} events)", args.events.max(1)),
        &journey,
    )
}

/// Runs `tributary forget`.
pub async fn forget(args: ForgetArgs) -> Result<()> {
    let mut client = Client::connect(&args.connect).await?;
    let (_, answer) = client
        .query(&format!(
            "CALL forget({}, {})",
            string_literal(&args.id_type),
            string_literal(&args.id_value)
        ))
        .await?;
    let rows = first_text(&answer, "count").unwrap_or_else(|| "0".into());
    println!(
        "Erased {} '{}' and every identifier linked to it: {rows} rows deleted; \
         new data for them will be dropped.",
        args.id_type, args.id_value
    );
    Ok(())
}
