//! `float4` / `float8` as PostgreSQL's `float4out` / `float8out` write them.

use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float16Type, Float32Type, Float64Type};

/// Appends the float at `row` as PostgreSQL's `float8out` / `float4out` write it.
pub fn float_text(array: &dyn Array, row: usize, single: bool, extra: i8, out: &mut String) {
    let v = match array.data_type() {
        DataType::Float16 => f64::from(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)),
        _ => array.as_primitive::<Float64Type>().value(row),
    };
    pg_float(v, single, extra, out);
}

/// Writes `v` as PostgreSQL does: shortest round-trip digits when `extra_float_digits` > 0
/// (the default), else `%.{DIG + extra}g`; fixed notation for decimal exponents in
/// [-4, DIG), scientific (`1e+300`, `1e-05`) outside it. DIG is 15 for `float8`, 6 for `float4`
/// (whose value `v` holds exactly).
pub fn pg_float(v: f64, single: bool, extra: i8, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let dig: i32 = if single { 6 } else { 15 };
    let (digits, exp, limit) = if extra > 0 {
        let mut buf = ryu::Buffer::new();
        let s = if single {
            buf.format_finite(v as f32)
        } else {
            buf.format_finite(v)
        };
        let (d, e) = decimal_parts(s);
        (d, e, dig)
    } else {
        let precision = (dig + i32::from(extra)).max(1);
        let s = format!("{:.*e}", (precision - 1) as usize, v);
        let (d, e) = decimal_parts(&s);
        (d, e, precision)
    };
    if v < 0.0 {
        out.push('-');
    }
    if exp < -4 || exp >= limit {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
}

/// The significant digits of a finite, non-zero decimal numeral (`-1.25e17`, `0.0001`,
/// `3.0`) without leading or trailing zeros, and the decimal exponent of the first digit.
fn decimal_parts(s: &str) -> (String, i32) {
    let s = s.trim_start_matches('-');
    let (mantissa, e) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut point = int.len() as i32;
    let all: String = int.chars().chain(frac.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    point -= (all.len() - trimmed.len()) as i32;
    let digits = trimmed.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.to_string(), point + e - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f8(v: f64) -> String {
        let mut s = String::new();
        pg_float(v, false, 1, &mut s);
        s
    }

    #[test]
    fn floats_print_as_postgresql_prints_them() {
        // Each pair is PostgreSQL 15's output (extra_float_digits = 1).
        for (v, want) in [
            (3.0, "3"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (1e300, "1e+300"),
            (-1e300, "-1e+300"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (9.223372036854776e18, "9.223372036854776e+18"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0"),
            (0.0, "0"),
            (5e-324, "5e-324"),
            (100.0, "100"),
        ] {
            assert_eq!(f8(v), want, "{v:e}");
        }
        let mut s = String::new();
        pg_float(f64::from(1e6f32), true, 1, &mut s);
        assert_eq!(s, "1e+06");
        s.clear();
        pg_float(f64::from(1.25e-3f32), true, 1, &mut s);
        assert_eq!(s, "0.00125");
        // extra_float_digits = 0: %.15g.
        s.clear();
        pg_float(0.1 + 0.2, false, 0, &mut s);
        assert_eq!(s, "0.3");
        s.clear();
        pg_float(1e300, false, 0, &mut s);
        assert_eq!(s, "1e+300");
    }
}
