//! `metadata` stored as a Parquet MAP (what Spark writes for `map<string,string>`) read as
//! the JSON object's text that `fletch load` stores, so both reach clients as the same JSON
//! object: keys in stored order, text values as JSON strings, numbers and booleans as
//! JSON literals, NULL values as `null`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StringBuilder};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MapToJson {
    signature: Signature,
}

/// The function, for projections built by [`super::layout::projection`].
pub fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(MapToJson {
        signature: Signature::new(TypeSignature::Any(1), Volatility::Immutable),
    }))
}

impl ScalarUDFImpl for MapToJson {
    fn name(&self) -> &str {
        "fletch_map_to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("fletch_map_to_json takes one argument");
        };
        let array = arg.to_array(args.number_rows)?;
        let Some(map) = array.as_map_opt() else {
            return exec_err!("fletch_map_to_json expects a MAP, got {}", array.data_type());
        };
        Ok(ColumnarValue::Array(to_json(map)?))
    }
}

fn to_json(map: &MapArray) -> Result<ArrayRef> {
    let keys = arrow::compute::cast(map.keys(), &DataType::Utf8)?;
    let keys = keys.as_string::<i32>();
    let values = map.values();
    let text = matches!(values.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let literal = values.data_type().is_numeric() || values.data_type() == &DataType::Boolean;
    let values_text = arrow::compute::cast(values, &DataType::Utf8).ok();
    let formatter = ArrayFormatter::try_new(values.as_ref(), &FormatOptions::default())?;
    let mut out = StringBuilder::with_capacity(map.len(), map.len() * 64);
    let offsets = map.value_offsets();
    let mut buf = String::new();
    for row in 0..map.len() {
        if map.is_null(row) {
            out.append_null();
            continue;
        }
        buf.clear();
        buf.push('{');
        for (n, i) in (offsets[row] as usize..offsets[row + 1] as usize).enumerate() {
            if n > 0 {
                buf.push(',');
            }
            buf.push_str(&serde_json::to_string(keys.value(i)).unwrap_or_default());
            buf.push(':');
            if values.is_null(i) {
                buf.push_str("null");
            } else if let (true, Some(t)) = (text, &values_text) {
                buf.push_str(&serde_json::to_string(t.as_string::<i32>().value(i)).unwrap_or_default());
            } else if literal {
                buf.push_str(&formatter.value(i).to_string());
            } else {
                buf.push_str(&serde_json::to_string(&formatter.value(i).to_string()).unwrap_or_default());
            }
        }
        buf.push('}');
        out.append_value(&buf);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{MapBuilder, StringBuilder};

    #[test]
    fn maps_become_json_objects_and_null_stays_null() {
        let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        b.keys().append_value("status_code");
        b.values().append_value("200");
        b.keys().append_value("quote\"d");
        b.values().append_null();
        b.append(true).unwrap();
        b.append(false).unwrap();
        b.append(true).unwrap();
        let json = to_json(&b.finish()).unwrap();
        let json = json.as_string::<i32>();
        assert_eq!(json.value(0), r#"{"status_code":"200","quote\"d":null}"#);
        assert!(json.is_null(1));
        assert_eq!(json.value(2), "{}");
    }
}
