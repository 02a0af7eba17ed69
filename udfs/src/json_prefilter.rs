//! The JSON getters of `datafusion-functions-json` (`json_get_float(properties, 'revenue')` and
//! the like), each behind a prefilter that skips parsing documents which cannot hold the path's
//! first key.
//!
//! Event `properties` are small objects whose keys depend on the event: a purchase's have
//! `revenue`, a page view's do not. Parsing every document to look for a key most of them lack
//! was about 70% of the CPU of `sum(json_get_float(properties, 'revenue'))` over the benchmark's
//! events (docs/benchmarks.md). A JSON text that holds the key `k` contains `"k"` literally,
//! unless the key is written with escapes, and an escape needs a backslash. So a document with
//! neither `"k"` nor a backslash cannot hold the key, and a getter's answer for it is NULL, as for
//! a NULL document. The prefilter turns such rows into NULLs and hands the batch to the getter,
//! which then skips them; every other row is answered by the getter as before. A property test at
//! the bottom checks each wrapped getter against the crate's own on generated JSON.
//!
//! The crate's rewrites (a cast of `json_get` becomes a typed getter, `->>` becomes
//! `json_as_text`) name its own functions; [`PrefilterRewrite`] swaps those for the wrapped ones.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ByteView, GenericStringArray, MAX_INLINE_VIEW_LEN,
    OffsetSizeTrait, StringViewArray,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::execution::registry::FunctionRegistry;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion_functions_json::udfs;
use memchr::memmem;

/// The getters whose answer for a document without the path's first key is NULL, the answer for
/// a NULL document. (`json_contains` answers false, so it is not one of them.) `json_get` is
/// left as it is: the crate recognises it by its type to turn `CAST(json_get(…) AS DOUBLE)` into
/// `json_get_float(…)` (which also reads integers), and that typed getter is then wrapped.
fn prefiltered_getters() -> Vec<Arc<ScalarUDF>> {
    vec![
        udfs::json_get_bool_udf(),
        udfs::json_get_float_udf(),
        udfs::json_get_int_udf(),
        udfs::json_get_json_udf(),
        udfs::json_get_array_udf(),
        udfs::json_get_str_udf(),
        udfs::json_as_text_udf(),
        udfs::json_length_udf(),
        udfs::json_object_keys_udf(),
    ]
}

/// Registers the crate's JSON functions, then replaces its getters with prefiltered ones and
/// adds [`PrefilterRewrite`] after the crate's own rewrites.
pub(crate) fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    datafusion_functions_json::register_all(registry)?;
    for getter in prefiltered_getters() {
        registry.register_udf(Arc::new(KeyPrefiltered::wrap(getter)))?;
    }
    registry.register_function_rewrite(Arc::new(PrefilterRewrite))?;
    Ok(())
}

/// A JSON getter whose documents first pass the key prefilter (module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KeyPrefiltered {
    getter: Arc<ScalarUDF>,
}

impl KeyPrefiltered {
    /// `getter` behind the prefilter, as a function of the same name.
    pub fn wrap(getter: Arc<ScalarUDF>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { getter })
    }
}

impl ScalarUDFImpl for KeyPrefiltered {
    fn name(&self) -> &str {
        self.getter.name()
    }

    fn aliases(&self) -> &[String] {
        self.getter.aliases()
    }

    fn signature(&self) -> &Signature {
        self.getter.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.getter.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.getter.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.getter.coerce_types(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.getter.simplify(args, info)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.getter.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.getter.placement(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(filtered) = without_impossible_documents(&args.args)? {
            args.args[0] = ColumnarValue::Array(filtered);
            args.arg_fields[0] = Arc::new(args.arg_fields[0].as_ref().clone().with_nullable(true));
        }
        self.getter.invoke_with_args(args)
    }
}

/// The documents (the first argument) with every one that cannot hold the path's first key
/// made NULL; `None` when the arguments do not have that shape (documents as a string array, the
/// first path step a constant key) or when every document may hold the key.
fn without_impossible_documents(args: &[ColumnarValue]) -> Result<Option<ArrayRef>> {
    let [
        ColumnarValue::Array(documents),
        ColumnarValue::Scalar(first_step),
        ..,
    ] = args
    else {
        return Ok(None);
    };
    // A step that spells an integer indexes an array, where the key never appears as text.
    let Some(Some(key)) = first_step.try_as_str() else {
        return Ok(None);
    };
    if key.parse::<isize>().is_ok() {
        return Ok(None);
    }
    let quoted_key = format!("\"{key}\"");
    let impossible = match documents.data_type() {
        DataType::Utf8 => impossible_texts(documents.as_string::<i32>(), &quoted_key),
        DataType::LargeUtf8 => impossible_texts(documents.as_string::<i64>(), &quoted_key),
        DataType::Utf8View => impossible_views(documents.as_string_view(), &quoted_key),
        _ => return Ok(None),
    };
    if impossible.count_set_bits() == 0 {
        return Ok(None);
    }
    Ok(Some(nullif(
        documents,
        &BooleanArray::new(impossible, None),
    )?))
}

/// Where, in one buffer of document text, the quoted key occurs and where the backslashes are:
/// found in one pass over the buffer rather than one search per document (documents are short,
/// and a search has a cost of its own).
struct Marks {
    key_starts: Vec<usize>,
    key_len: usize,
    backslashes: Vec<usize>,
}

impl Marks {
    fn find(text: &[u8], quoted_key: &str) -> Self {
        Self {
            key_starts: memmem::find_iter(text, quoted_key.as_bytes()).collect(),
            key_len: quoted_key.len(),
            backslashes: memchr::memchr_iter(b'\\', text).collect(),
        }
    }

    /// Whether the document at `start..start + len` of the buffer may hold the key: it contains
    /// the quoted key or a backslash.
    fn may_hold(&self, start: usize, len: usize) -> bool {
        let end = start + len;
        let key = self.key_starts.partition_point(|&at| at < start);
        let backslash = self.backslashes.partition_point(|&at| at < start);
        self.key_starts
            .get(key)
            .is_some_and(|&at| at + self.key_len <= end)
            || self.backslashes.get(backslash).is_some_and(|&at| at < end)
    }
}

/// Which rows of a `Utf8` or `LargeUtf8` array are non-null documents that cannot hold the key.
fn impossible_texts<O: OffsetSizeTrait>(
    documents: &GenericStringArray<O>,
    quoted_key: &str,
) -> BooleanBuffer {
    let offsets = documents.value_offsets();
    let (first, last) = (offsets[0].as_usize(), offsets[offsets.len() - 1].as_usize());
    let marks = Marks::find(&documents.value_data()[first..last], quoted_key);
    BooleanBuffer::collect_bool(documents.len(), |row| {
        let start = offsets[row].as_usize();
        let len = offsets[row + 1].as_usize() - start;
        documents.is_valid(row) && !marks.may_hold(start - first, len)
    })
}

/// Which rows of a `Utf8View` array are non-null documents that cannot hold the key. Short
/// documents live in their views and are searched there; the rest are found in their buffers,
/// or one by one when the buffers are mostly text of other rows (a slice or a filtered batch).
fn impossible_views(documents: &StringViewArray, quoted_key: &str) -> BooleanBuffer {
    let needle = quoted_key.as_bytes();
    let may_hold =
        |text: &[u8]| memchr::memchr(b'\\', text).is_some() || memmem::find(text, needle).is_some();
    let long_text: usize = documents
        .views()
        .iter()
        .map(|&raw| raw as u32)
        .filter(|&len| len > MAX_INLINE_VIEW_LEN)
        .map(|len| len as usize)
        .sum();
    let buffered: usize = documents.data_buffers().iter().map(|b| b.len()).sum();
    let marks: Option<Vec<Marks>> = (buffered <= 2 * long_text + (1 << 20)).then(|| {
        let buffers = documents.data_buffers().iter();
        buffers
            .map(|buffer| Marks::find(buffer.as_slice(), quoted_key))
            .collect()
    });
    BooleanBuffer::collect_bool(documents.len(), |row| {
        if documents.is_null(row) {
            return false;
        }
        let raw = documents.views()[row];
        let len = raw as u32;
        match &marks {
            Some(marks) if len > MAX_INLINE_VIEW_LEN => {
                let view = ByteView::from(raw);
                !marks[view.buffer_index as usize].may_hold(view.offset as usize, len as usize)
            }
            _ => !may_hold(documents.value(row).as_bytes()),
        }
    })
}

/// Swaps the crate's own getters, which its rewrites name, for the prefiltered ones.
#[derive(Debug)]
pub struct PrefilterRewrite;

impl FunctionRewrite for PrefilterRewrite {
    fn name(&self) -> &'static str {
        "JsonKeyPrefilter"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(call) = expr else {
            return Ok(Transformed::no(expr));
        };
        // A wrapped getter equals none of the crate's, so it is left as it is.
        let unwrapped = prefiltered_getters()
            .into_iter()
            .find(|getter| getter.as_ref() == call.func.as_ref());
        Ok(match unwrapped {
            Some(getter) => Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(KeyPrefiltered::wrap(getter)),
                call.args,
            ))),
            None => Transformed::no(Expr::ScalarFunction(call)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, StringViewArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::scalar::ScalarValue;
    use proptest::prelude::*;

    fn call(function: &ScalarUDF, documents: &ArrayRef, path: &[ScalarValue]) -> ArrayRef {
        let mut args = vec![ColumnarValue::Array(Arc::clone(documents))];
        args.extend(path.iter().cloned().map(ColumnarValue::Scalar));
        let arg_fields = args
            .iter()
            .enumerate()
            .map(|(i, arg)| Arc::new(Field::new(format!("a{i}"), arg.data_type(), true)))
            .collect::<Vec<_>>();
        let types = arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect::<Vec<_>>();
        let return_type = function.return_type(&types).unwrap();
        let args = ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: documents.len(),
            return_field: Arc::new(Field::new("out", return_type, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        function
            .invoke_with_args(args)
            .unwrap()
            .into_array(documents.len())
            .unwrap()
    }

    /// Each prefiltered getter answers exactly as the crate's, for `documents` and `path`.
    fn assert_same_answers(documents: Vec<Option<String>>, path: &[ScalarValue]) {
        let plain: ArrayRef = Arc::new(StringArray::from(documents.clone()));
        let views: ArrayRef = Arc::new(StringViewArray::from(documents));
        let len = plain.len();
        // Slices: offsets that do not start at 0, buffers that hold other rows' text.
        let sliced = [
            plain.slice(len / 2, len - len / 2),
            views.slice(len / 2, len - len / 2),
        ];
        for getter in prefiltered_getters() {
            let wrapped = KeyPrefiltered::wrap(Arc::clone(&getter));
            for documents in [&plain, &views].into_iter().chain(&sliced) {
                let expected = call(&getter, documents, path);
                let actual = call(&wrapped, documents, path);
                assert_eq!(
                    actual.to_data(),
                    expected.to_data(),
                    "{} over {documents:?} at {path:?}",
                    getter.name()
                );
            }
        }
    }

    #[test]
    fn escaped_and_nested_keys_are_still_found() {
        let documents = [
            r#"{"revenue": 12.5}"#,
            r#"{"rev\u0065nue": 3}"#,
            r#"{"order": {"revenue": 4}}"#,
            r#"{"note": "revenue"}"#,
            r#"{"path": "/p/1"}"#,
            "{}",
            "not json",
            r#"["revenue"]"#,
        ];
        let documents: Vec<_> = documents.iter().map(|d| Some(d.to_string())).collect();
        for path in [
            vec![ScalarValue::from("revenue")],
            vec![ScalarValue::from("order"), ScalarValue::from("revenue")],
        ] {
            assert_same_answers(documents.clone(), &path);
        }
        let getter = KeyPrefiltered::wrap(udfs::json_get_float_udf());
        let answers = call(
            &getter,
            &(Arc::new(StringArray::from(documents)) as ArrayRef),
            &[ScalarValue::from("revenue")],
        );
        let answers = answers.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        assert_eq!(answers.value(0), 12.5);
        assert_eq!(
            answers.value(1),
            3.0,
            "a key written with an escape is found"
        );
        assert_eq!(answers.null_count(), 6);
    }

    #[test]
    fn a_small_slice_of_large_buffers_is_searched_row_by_row() {
        let many: Vec<_> = (0..40_000)
            .map(|i| Some(format!(r#"{{"path": "/p/{i}", "revenue": {i}}}"#)))
            .chain([Some(r#"{"path": "/p/x", "other": 1}"#.to_string())])
            .collect();
        let views: ArrayRef = Arc::new(StringViewArray::from(many));
        let tail = views.slice(views.len() - 3, 3);
        let getter = KeyPrefiltered::wrap(udfs::json_get_float_udf());
        let answers = call(&getter, &tail, &[ScalarValue::from("revenue")]);
        let answers = answers.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        assert_eq!(
            (0..3)
                .map(|i| answers.is_valid(i).then(|| answers.value(i)))
                .collect::<Vec<_>>(),
            vec![Some(39_998.0), Some(39_999.0), None]
        );
    }

    fn json_text() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "\"a\"",
            "\"b\"",
            "\"\\u0061\"",
            "\"0\"",
            "\"a\\\"\"",
            "\"é\"",
        ]);
        let leaf = prop::sample::select(vec![
            "1",
            "2.5",
            "-3",
            "true",
            "null",
            "\"a\"",
            "\"x\\\\y\"",
            "[]",
            "{}",
        ])
        .prop_map(str::to_string);
        leaf.prop_recursive(3, 16, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((key.clone(), inner), 0..4).prop_map(|members| {
                    let members: Vec<_> = members
                        .into_iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect();
                    format!("{{{}}}", members.join(", "))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn prefiltered_getters_answer_as_the_crate(
            documents in prop::collection::vec(
                prop::option::weighted(0.9, prop_oneof![json_text(), "[ -~]{0,12}"]), 1..12),
            path in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "é", "a\"", "0", "1"]), 1..3),
        ) {
            let path: Vec<_> = path.into_iter().map(ScalarValue::from).collect();
            assert_same_answers(documents, &path);
        }
    }
}
