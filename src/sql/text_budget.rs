//! `lpad`, `rpad` and `repeat` with a bound on the text one call may build.
//!
//! DataFusion's own versions reserve the whole output of a batch before writing it: the
//! sum of the requested lengths, summed over every row. A negative length per row (which
//! SQL defines as the empty string) turns into a huge `usize` there and panics with
//! "capacity overflow"; a large but legal length over many rows asks the allocator for
//! terabytes, which aborts the process. These wrappers replace the built-ins under the
//! same names: they clamp negative lengths to zero, refuse a call whose output would pass
//! [`MAX_BYTES_PER_CALL`] with an error naming the function (a 400, the input's fault),
//! and otherwise hand the call to the built-in unchanged.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Text one call (one batch) of a wrapped function may build.
pub const MAX_BYTES_PER_CALL: u64 = 256 * 1024 * 1024;

/// How the output size follows from the arguments.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Growth {
    /// `lpad(text, n [, fill])`: `n` characters, up to 4 bytes each.
    Pad,
    /// `repeat(text, n)`: `n` times the text's bytes.
    Repeat,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

/// The functions [`register`] replaces.
pub const NAMES: [&str; 3] = ["lpad", "rpad", "repeat"];

/// Replace the built-ins in `ctx` by their bounded versions.
pub fn register(ctx: &SessionContext) {
    for (name, growth) in NAMES.into_iter().zip([Growth::Pad, Growth::Pad, Growth::Repeat]) {
        // The built-ins are always there; a build without them has nothing to guard.
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded { inner, growth }));
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(counts) = args.args.get(1).and_then(|c| counts(c, args.number_rows)) {
            let counts = clamp_negative(&counts);
            let bytes = match self.growth {
                Growth::Pad => counts.iter().flatten().fold(0u64, |sum, n| sum.saturating_add(n as u64 * 4)),
                Growth::Repeat => repeated_bytes(&args.args[0], &counts, args.number_rows)?,
            };
            if bytes > MAX_BYTES_PER_CALL {
                return exec_err!(
                    "{} would build up to {} MiB of text for {} rows; the limit is {} MiB per batch",
                    self.name(),
                    bytes / (1024 * 1024),
                    args.number_rows,
                    MAX_BYTES_PER_CALL / (1024 * 1024)
                );
            }
            if matches!(args.args[1], ColumnarValue::Array(_)) {
                args.args[1] = ColumnarValue::Array(Arc::new(counts));
            }
        }
        self.inner.invoke_with_args(args)
    }
}

/// The length argument, one value per row (`None` when it is not an integer, which the
/// built-in reports itself).
fn counts(arg: &ColumnarValue, rows: usize) -> Option<Int64Array> {
    match arg {
        ColumnarValue::Scalar(ScalarValue::Int64(n)) => Some(Int64Array::from(vec![*n; rows.max(1)])),
        ColumnarValue::Array(a) => a.as_primitive_opt::<arrow::datatypes::Int64Type>().cloned(),
        ColumnarValue::Scalar(_) => None,
    }
}

fn clamp_negative(counts: &Int64Array) -> Int64Array {
    if counts.iter().flatten().all(|n| n >= 0) {
        return counts.clone();
    }
    counts.iter().map(|n| n.map(|n| n.max(0))).collect()
}

/// Bytes `repeat` would write: each row's text length times its count.
fn repeated_bytes(text: &ColumnarValue, counts: &Int64Array, rows: usize) -> Result<u64> {
    let text: ArrayRef = text.to_array(rows.max(1))?;
    let lengths = arrow::compute::kernels::length::length(&text)?;
    let lengths = arrow::compute::cast(&lengths, &DataType::Int64)?;
    let lengths = lengths.as_primitive::<arrow::datatypes::Int64Type>();
    Ok(lengths
        .iter()
        .zip(counts.iter())
        .filter_map(|(len, n)| Some((len? as u64).saturating_mul(n? as u64)))
        .fold(0u64, u64::saturating_add))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_lengths_become_zero_and_nulls_stay() {
        let clamped = clamp_negative(&Int64Array::from(vec![Some(-3), None, Some(5)]));
        assert_eq!(clamped, Int64Array::from(vec![Some(0), None, Some(5)]));
    }

    #[test]
    fn repeat_counts_bytes_per_row() {
        let text = ColumnarValue::Array(Arc::new(arrow::array::StringArray::from(vec![Some("ab"), None, Some("é")])));
        let counts = Int64Array::from(vec![Some(3), Some(100), Some(i64::MAX)]);
        assert_eq!(repeated_bytes(&text, &counts, 3).unwrap(), u64::MAX);
        let counts = Int64Array::from(vec![Some(3), Some(100), Some(2)]);
        assert_eq!(repeated_bytes(&text, &counts, 3).unwrap(), 6 + 4);
    }
}
