//! Erasing a person (`tributary forget`, `CALL forget(id_type, id_value)`): every identifier of
//! their customer goes on the suppression list first (so that nothing new of theirs is stored),
//! then their rows leave every table that holds them (events, identities, identity_changes,
//! profiles and the configured trait tables), the Delta files that held them are rewritten and
//! the old ones vacuumed, the write-ahead log is purged, and the identity graph is rebuilt.

use tributary_catalog::builtin::{EVENTS, IDENTITIES, IDENTITY_CHANGES, PROFILES};
use tributary_identity::Identifier;

use super::records::{ANONYMOUS_ID, USER_ID};
use crate::Engine;
use crate::error::Result;
use crate::sql_text::{identifier, string_literal};

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    /// The customer erased, if the identifier had one.
    pub customer_id: Option<String>,
    /// The identifiers put on the suppression list.
    pub identifiers: Vec<Identifier>,
    /// Rows deleted, per table.
    pub deleted: Vec<(String, u64)>,
}

impl ForgetReport {
    /// Rows deleted in all tables.
    pub fn rows(&self) -> u64 {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

/// SQL condition: `(type_column, value_column)` is one of `ids`.
fn any_identifier(ids: &[Identifier], type_column: &str, value_column: &str) -> String {
    let mut by_type: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for id in ids {
        by_type
            .entry(&id.id_type)
            .or_default()
            .push(string_literal(&id.value));
    }
    let parts: Vec<String> = by_type
        .iter()
        .map(|(kind, values)| {
            format!(
                "({type_column} = {} AND {value_column} IN ({}))",
                string_literal(kind),
                values.join(", ")
            )
        })
        .collect();
    if parts.is_empty() {
        "FALSE".to_string()
    } else {
        parts.join(" OR ")
    }
}

/// SQL condition on a fixed-type column.
fn values_of(ids: &[Identifier], kind: &str, column: &str) -> Option<String> {
    let values: Vec<String> = ids
        .iter()
        .filter(|id| id.id_type == kind)
        .map(|id| string_literal(&id.value))
        .collect();
    (!values.is_empty()).then(|| format!("{column} IN ({})", values.join(", ")))
}

/// Erases the person `(id_type, value)` belongs to from `tenant`.
pub async fn forget(
    engine: &Engine,
    tenant: &str,
    id_type: &str,
    value: &str,
) -> Result<ForgetReport> {
    let service = engine.identity();
    let identity = service.tenant(tenant);
    let (customer, mut identifiers) =
        identity.read(|graph| match graph.customer_of(id_type, value) {
            Some(customer) => (Some(customer), graph.identifiers_of(customer)),
            None => (None, Vec::new()),
        });
    if !identifiers
        .iter()
        .any(|i| i.id_type == id_type && i.value == value)
    {
        identifiers.push(Identifier::new(id_type, value));
    }
    service.suppression().add(tenant, &identifiers).await?;
    let customer_text = customer.map(|c| c.to_string());
    let mut statements: Vec<(&str, String)> = Vec::new();
    let event_conditions: Vec<String> = [
        values_of(&identifiers, ANONYMOUS_ID, "anonymous_id"),
        values_of(&identifiers, USER_ID, "user_id"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !event_conditions.is_empty() {
        statements.push((EVENTS, event_conditions.join(" OR ")));
    }
    // identities and identity_changes name pairs with the same four columns.
    let either_side = format!(
        "{} OR {}",
        any_identifier(&identifiers, "id_type", "id_value"),
        any_identifier(&identifiers, "linked_type", "linked_value")
    );
    statements.push((IDENTITIES, either_side.clone()));
    let mut changes = either_side;
    if let Some(customer) = &customer_text {
        changes = format!(
            "{changes} OR customer_id = {0} OR other_customer_id = {0}",
            string_literal(customer)
        );
        statements.push((
            PROFILES,
            format!("customer_id = {}", string_literal(customer)),
        ));
    }
    statements.push((IDENTITY_CHANGES, changes));
    let rules = service.rules(tenant).await?;
    let trait_tables: Vec<(String, String)> = rules
        .config()
        .trait_tables
        .iter()
        .filter_map(|t| {
            values_of(
                &identifiers,
                &t.id_type,
                &format!("CAST({} AS VARCHAR)", identifier(&t.id_column)),
            )
            .map(|condition| (t.table.clone(), condition))
        })
        .collect();
    let mut report = ForgetReport {
        customer_id: customer_text,
        identifiers,
        deleted: Vec::new(),
    };
    let schema = engine.catalog().require_tenant(tenant)?;
    let tables = statements
        .iter()
        .map(|(t, c)| (t.to_string(), c.clone()))
        .chain(trait_tables);
    for (table, condition) in tables {
        if !schema.has_table(&table) {
            continue;
        }
        let deleted = engine.delete_rows(tenant, &table, &condition).await?;
        if deleted > 0 {
            vacuum(&schema, &table).await?;
        }
        report.deleted.push((table, deleted));
    }
    engine.writer().purge_log().await?;
    service.rebuild(tenant).await?;
    tracing::info!(tenant, rows = report.rows(), "erased a person");
    Ok(report)
}

/// Removes the files the table no longer uses, at once (no retention period).
async fn vacuum(schema: &tributary_catalog::TenantSchema, table: &str) -> Result<()> {
    let (_, metrics) = schema
        .delta_table(table)?
        .vacuum()
        .with_retention_period(chrono::Duration::zero())
        .with_enforce_retention_duration(false)
        .await?;
    tracing::info!(
        table,
        files = metrics.files_deleted.len(),
        "vacuumed erased files"
    );
    schema.refresh(table).await?;
    Ok(())
}
