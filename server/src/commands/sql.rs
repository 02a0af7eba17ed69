//! `tributary sql`: run SQL against a server, once (`-c`) or at an interactive prompt with
//! history (statements end with `;`).

use arrow::array::RecordBatch;
use arrow::util::display::FormatOptions;
use arrow::util::pretty::pretty_format_batches_with_options;
use clap::Args;

use crate::commands::client::{Client, ConnectArgs};
use crate::error::Result;

/// Options of `tributary sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Where the server is.
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Run this SQL and exit (otherwise start an interactive prompt).
    #[arg(short = 'c', long = "command")]
    pub command: Option<String>,
}

/// Runs `tributary sql`.
pub async fn run(args: SqlArgs) -> Result<()> {
    let mut client = Client::connect(&args.connect).await?;
    match args.command {
        Some(sql) => run_and_print(&mut client, &sql).await,
        None => interactive(client).await,
    }
}

async fn run_and_print(client: &mut Client, sql: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let (schema, batches) = client.query(sql).await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let options = FormatOptions::default().with_null("NULL");
    let shown = if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    };
    println!("{}", pretty_format_batches_with_options(&shown, &options)?);
    eprintln!(
        "{rows} row{} in {:.3}s",
        if rows == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn interactive(mut client: Client) -> Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| crate::error::Error::BadInput(format!("cannot start the prompt: {e}")))?;
    let history = std::env::var_os("HOME")
        .map(|home| std::path::PathBuf::from(home).join(".tributary_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("Tributary SQL — end statements with ';', \\q to quit.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "tributary> "
        } else {
            "      ...> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if trimmed.ends_with(';') {
                    let sql = buffer.trim().trim_end_matches(';').to_string();
                    buffer.clear();
                    let _ = editor.add_history_entry(&sql);
                    if let Err(e) = run_and_print(&mut client, &sql).await {
                        eprintln!("{e}");
                    }
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("{e}");
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}
