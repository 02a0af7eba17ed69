//! `tributary generate`: writes the synthetic CDP data set (see tributary-datagen) as
//! Parquet files ready for `tributary import`.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tributary_datagen::{GenerateConfig, generate};

use crate::error::Result;

/// Options of `tributary generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of customers (about 50 events each).
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,

    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Days the events are spread over, from 2026-01-01.
    #[arg(long, default_value_t = 30)]
    pub days: u32,

    /// Also give each customer a shop's purchase history over this many days before the period
    /// starts (0: none): its own rate, stops after some purchase, spend of its own,
    /// win-backs — data the value models (clv, rfm, lifecycle) can learn from. Try 730.
    #[arg(long, default_value_t = 0)]
    pub history_days: u32,

    /// Directory to write events.parquet, identities.parquet and orders.parquet into.
    #[arg(long, default_value = "./tributary-sample")]
    pub out: PathBuf,
}

/// Runs `tributary generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let bar = ProgressBar::new(args.customers);
    if let Ok(style) =
        ProgressStyle::with_template("generating [{bar:40}] {pos}/{len} customers ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let config = GenerateConfig {
        customers: args.customers,
        seed: args.seed,
        days: args.days,
        history_days: args.history_days,
    };
    let summary = generate(&config, &args.out, |done| {
        if done % 1000 == 0 {
            bar.set_position(done);
        }
    })?;
    bar.finish_and_clear();
    println!(
        "wrote {} events, {} identities, {} orders to {}",
        summary.events,
        summary.identities,
        summary.orders,
        args.out.display()
    );
    for (file, table) in [
        ("events.parquet", "events"),
        ("identities.parquet", "identities"),
        ("orders.parquet", "orders"),
    ] {
        println!(
            "  tributary import {} --table {table}",
            args.out.join(file).display()
        );
    }
    Ok(())
}
