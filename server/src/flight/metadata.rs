//! Answers to the Flight SQL metadata calls that BI tools make before any query: `GetSqlInfo`
//! (JDBC builds `DatabaseMetaData` from it and some tools crash on a missing key),
//! `GetXdbcTypeInfo` (Power BI), and the empty-but-valid key results.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use tonic::Status;
use tributary_catalog::PUBLIC_SCHEMA;

use crate::flight::edge::with_column_metadata;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType,
};

/// Identifiers longer than this are refused by the catalog (see tributary-catalog).
const NAME_LENGTH_MAX: i64 = tributary_catalog::NAME_LENGTH_MAX as i64;

/// The server's `GetSqlInfo` answers, with its statement time limit (milliseconds, 0: none).
pub(crate) fn sql_info(statement_timeout_ms: i32) -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Tributary");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(
        SqlInfo::FlightSqlServerStatementTimeout,
        statement_timeout_ms,
    );
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, true);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(
        SqlInfo::SqlSystemFunctions,
        &["current_database", "current_schema"][..],
    );
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(
        SqlInfo::SqlSupportsConvert,
        BTreeMap::<i32, Vec<i32>>::new(),
    );
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        (1 << SupportedSqlGrammar::SqlCoreGrammar as i32)
            | (1 << SupportedSqlGrammar::SqlMinimumGrammar as i32),
    );
    b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b1i32);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlOuterJoinsSupportLevel, 2i32);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "tenant");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0b111i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0b111i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    for key in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0 means "no limit known" in JDBC's DatabaseMetaData.
        b.append(key, 0i64);
    }
    b.append(SqlInfo::SqlMaxColumnNameLength, NAME_LENGTH_MAX);
    b.append(SqlInfo::SqlDbSchemaNameLength, NAME_LENGTH_MAX);
    b.append(SqlInfo::SqlMaxCatalogNameLength, NAME_LENGTH_MAX);
    b.append(SqlInfo::SqlMaxTableNameLength, NAME_LENGTH_MAX);
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(SqlInfo::SqlSupportedResultSetTypes, 0b10i32);
    for key in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        b.append(key, 0b10i32);
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("static SqlInfo data is well formed")
}

const KEYWORDS: &[&str] = &[
    "absolute",
    "action",
    "add",
    "all",
    "allocate",
    "alter",
    "and",
    "any",
    "are",
    "as",
    "asc",
    "between",
    "by",
    "cascade",
    "case",
    "cast",
    "create",
    "cross",
    "current",
    "database",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "explain",
    "false",
    "filter",
    "from",
    "full",
    "group",
    "having",
    "in",
    "inner",
    "insert",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "left",
    "like",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "partition",
    "right",
    "select",
    "set",
    "show",
    "table",
    "then",
    "true",
    "truncate",
    "union",
    "update",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "degrees", "exp", "floor", "ln", "log",
    "log10", "log2", "pi", "power", "radians", "random", "round", "signum", "sin", "sqrt", "tan",
    "trunc",
];

const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "to_hex",
    "translate",
    "trim",
    "upper",
];

const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "from_unixtime",
    "now",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_seconds",
];

/// The SQL types Tributary accepts, for `GetXdbcTypeInfo`.
pub(crate) static XDBC_TYPE_INFO: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: &[(&str, XdbcDataType, Option<i32>, Option<&str>)] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
        ("REAL", XdbcDataType::XdbcReal, Some(7), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None),
        (
            "DECIMAL",
            XdbcDataType::XdbcDecimal,
            Some(38),
            Some("precision,scale"),
        ),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, None),
        ("VARBINARY", XdbcDataType::XdbcVarbinary, None, None),
        ("DATE", XdbcDataType::XdbcDate, Some(10), None),
        ("TIME", XdbcDataType::XdbcTime, Some(15), None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(26), None),
        (
            "TIMESTAMP WITH TIME ZONE",
            XdbcDataType::XdbcTimestamp,
            Some(32),
            None,
        ),
        ("INTERVAL", XdbcDataType::XdbcInterval, None, None),
        ("TINYINT UNSIGNED", XdbcDataType::XdbcTinyint, Some(3), None),
        (
            "SMALLINT UNSIGNED",
            XdbcDataType::XdbcSmallint,
            Some(5),
            None,
        ),
        (
            "INTEGER UNSIGNED",
            XdbcDataType::XdbcInteger,
            Some(10),
            None,
        ),
        ("BIGINT UNSIGNED", XdbcDataType::XdbcBigint, Some(20), None),
        // Nested and untyped results: JDBC reads them as objects (Types.OTHER).
        ("ARRAY", XdbcDataType::XdbcUnknownType, None, None),
        ("STRUCT", XdbcDataType::XdbcUnknownType, None, None),
        ("MAP", XdbcDataType::XdbcUnknownType, None, None),
        ("NULL", XdbcDataType::XdbcUnknownType, None, None),
    ];
    for (name, data_type, column_size, create_params) in types {
        let is_text = matches!(data_type, XdbcDataType::XdbcVarchar);
        let quoted = is_text
            || matches!(
                data_type,
                XdbcDataType::XdbcDate | XdbcDataType::XdbcTime | XdbcDataType::XdbcTimestamp
            );
        b.append(XdbcTypeInfo {
            type_name: (*name).into(),
            data_type: *data_type,
            column_size: *column_size,
            literal_prefix: quoted.then(|| "'".into()),
            literal_suffix: quoted.then(|| "'".into()),
            create_params: create_params.map(|p| p.split(',').map(String::from).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: is_text,
            searchable: Searchable::Full,
            unsigned_attribute: Some(name.ends_with("UNSIGNED")),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some((*name).into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: *data_type,
            datetime_subcode: None,
            num_prec_radix: (!quoted).then_some(10),
            interval_precision: None,
        });
    }
    b.build().expect("static XDBC type data is well formed")
});

/// Schema of `GetPrimaryKeys` answers (Tributary tables declare no keys: always empty).
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Schema of `GetImportedKeys`, `GetExportedKeys` and `GetCrossReference` answers (always empty).
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// An empty batch of `schema`.
pub(crate) fn empty(schema: SchemaRef) -> RecordBatch {
    RecordBatch::new_empty(schema)
}

/// Every (tenant, schema, table, type, schema) the session can see, filtered by catalog.
pub(crate) async fn list_tables(
    ctx: &SessionContext,
    catalog_filter: Option<&str>,
    table_type_label: &str,
) -> Result<Vec<(String, String, String, String, SchemaRef)>, Status> {
    let mut rows = Vec::new();
    for catalog_name in ctx.catalog_names() {
        if catalog_filter.is_some_and(|c| c != catalog_name) {
            continue;
        }
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for table_name in schema.table_names() {
                let Some(table) = schema
                    .table(&table_name)
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                else {
                    continue;
                };
                let table_type = match table.table_type() {
                    datafusion::datasource::TableType::View => "VIEW".to_string(),
                    _ if schema_name == PUBLIC_SCHEMA => table_type_label.to_string(),
                    _ => "SYSTEM TABLE".to_string(),
                };
                let columns =
                    with_column_metadata(&table.schema(), &catalog_name, &schema_name, &table_name);
                rows.push((
                    catalog_name.clone(),
                    schema_name.clone(),
                    table_name,
                    table_type,
                    Arc::new(columns),
                ));
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flight::edge::sql_type_name;
    use arrow::datatypes::{IntervalUnit, TimeUnit};
    use arrow_flight::sql::CommandGetSqlInfo;

    #[test]
    fn sql_info_answers_every_key_it_claims() {
        let all = CommandGetSqlInfo { info: vec![] };
        let batch = all.into_builder(&sql_info(0)).build().unwrap();
        assert!(batch.num_rows() > 80, "{} keys", batch.num_rows());
        let xdbc = XDBC_TYPE_INFO.record_batch(None).unwrap();
        assert_eq!(xdbc.num_rows(), 23);
    }

    /// Every type a query can answer with is described by `GetXdbcTypeInfo` under the name
    /// result metadata gives it (`ARROW:FLIGHT:SQL:TYPE_NAME`).
    #[test]
    fn every_result_type_is_described() {
        let batch = XDBC_TYPE_INFO
            .record_batch(
                None::<arrow_flight::sql::CommandGetXdbcTypeInfo>.and_then(|c| c.data_type),
            )
            .unwrap();
        let names = batch
            .column_by_name("type_name")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let described: Vec<&str> = names.iter().flatten().collect();
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        for data_type in [
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal128(20, 4),
            DataType::Utf8View,
            DataType::LargeUtf8,
            DataType::BinaryView,
            DataType::Date32,
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Interval(IntervalUnit::MonthDayNano),
            DataType::Duration(TimeUnit::Second),
            DataType::List(Arc::clone(&item)),
            DataType::Struct(vec![Field::new("a", DataType::Int64, true)].into()),
            DataType::Null,
        ] {
            let name = sql_type_name(&data_type);
            let base = name.split('(').next().unwrap();
            assert!(
                described.contains(&base),
                "{data_type} ({name}) is not described"
            );
        }
    }
}
