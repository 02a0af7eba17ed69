//! The Arrow types that leave the server.
//!
//! Inside the engine strings are `Utf8View` and partition values may be dictionaries: fast for
//! DataFusion, but the Flight SQL JDBC driver (≤ 18.3) and the SQLAlchemy dialect reject view
//! types. So results are converted here, at the edge: the schema announced in `FlightInfo`
//! ([`client_schema`]) is the schema of every batch `DoGet` streams ([`to_client_batch`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The type a client receives for an engine type.
pub(crate) fn client_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => client_type(value),
        DataType::List(field) | DataType::ListView(field) => DataType::List(client_field(field)),
        DataType::LargeList(field) | DataType::LargeListView(field) => {
            DataType::LargeList(client_field(field))
        }
        DataType::FixedSizeList(field, size) => DataType::FixedSizeList(client_field(field), *size),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(client_field).collect::<Fields>())
        }
        DataType::Map(field, sorted) => DataType::Map(client_field(field), *sorted),
        other => other.clone(),
    }
}

fn client_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(client_type(field.data_type())),
    )
}

/// The schema a client receives for an engine schema (same names, nullability and metadata).
pub(crate) fn client_schema(schema: &Schema) -> SchemaRef {
    let fields: Fields = schema.fields().iter().map(client_field).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Converts a batch to `schema` (a [`client_schema`]), casting only the columns that differ.
pub(crate) fn to_client_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    tributary_engine::write::conform::cast_batch(batch, schema)
}

/// The standard Flight SQL column metadata that JDBC reads into `ResultSetMetaData`.
pub(crate) fn with_column_metadata(
    schema: &Schema,
    catalog: &str,
    db_schema: &str,
    table: &str,
) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let mut metadata = field.metadata().clone();
            for (key, value) in [
                ("ARROW:FLIGHT:SQL:CATALOG_NAME", catalog.to_string()),
                ("ARROW:FLIGHT:SQL:DB_SCHEMA_NAME", db_schema.to_string()),
                ("ARROW:FLIGHT:SQL:TABLE_NAME", table.to_string()),
                (
                    "ARROW:FLIGHT:SQL:TYPE_NAME",
                    sql_type_name(field.data_type()),
                ),
                ("ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT", "false".to_string()),
                ("ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE", "true".to_string()),
                ("ARROW:FLIGHT:SQL:IS_READ_ONLY", "false".to_string()),
                ("ARROW:FLIGHT:SQL:IS_SEARCHABLE", "true".to_string()),
                ("ARROW:FLIGHT:SQL:REMARKS", String::new()),
            ] {
                metadata.insert(key.to_string(), value);
            }
            field
                .as_ref()
                .clone()
                .with_data_type(client_type(field.data_type()))
                .with_metadata(metadata)
        })
        .collect();
    Schema::new(fields)
}

/// The SQL name of an Arrow type, as `information_schema` and JDBC show it.
pub(crate) fn sql_type_name(data_type: &DataType) -> String {
    match client_type(data_type) {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INTEGER UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            "VARBINARY".into()
        }
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "ARRAY".into(),
        DataType::Struct(_) => "STRUCT".into(),
        DataType::Map(..) => "MAP".into(),
        DataType::Null => "NULL".into(),
        other => other.to_string().to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, DictionaryArray, Int32Array, ListBuilder, StringViewBuilder};
    use arrow::datatypes::Int16Type;

    #[test]
    fn views_and_dictionaries_become_plain_types() {
        let mut list = ListBuilder::new(StringViewBuilder::new());
        list.values().append_value("a");
        list.append(true);
        list.append(false);
        let dict: DictionaryArray<Int16Type> = vec!["x", "y"].into_iter().collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("l", Arc::new(list.finish()) as ArrayRef),
            ("d", Arc::new(dict) as ArrayRef),
            ("i", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
        ])
        .unwrap();
        let schema = client_schema(&batch.schema());
        assert_eq!(
            schema.field(0).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        let converted = to_client_batch(&batch, &schema).unwrap();
        assert_eq!(converted.schema(), schema);
        assert_eq!(converted.num_rows(), 2);
    }

    #[test]
    fn sql_type_names() {
        assert_eq!(sql_type_name(&DataType::Utf8View), "VARCHAR");
        assert_eq!(sql_type_name(&DataType::Decimal128(10, 2)), "DECIMAL(10,2)");
    }
}
