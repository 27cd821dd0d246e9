//! COPY's binary format (PGCOPY) read into the text of each value, so binary rows go into a
//! table by the same casts and checks as text rows. The format carries no types: each field is
//! read as the type of the column it fills, as PostgreSQL reads it (asyncpg's
//! `copy_records_to_table` and psycopg's binary copy send each column's own binary form).

use datafusion::arrow::datatypes::DataType;

use crate::error::{EddyError, Result};

/// The 11-byte signature that starts PGCOPY data.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

fn bad(message: impl Into<String>) -> EddyError {
    EddyError::Data {
        code: "22P04",
        message: message.into(),
    }
}

/// Whether a column of `t` can be read from binary COPY data.
pub fn readable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Decimal128(..)
    )
}

/// What a piece of binary COPY data held.
pub enum Piece<'a> {
    /// More bytes are needed.
    Incomplete,
    /// The trailer (-1 fields): the data ends; the bytes it took.
    End(usize),
    /// One row: each field's bytes (`None`: NULL), and the bytes the row took.
    Row(Vec<Option<&'a [u8]>>, usize),
}

/// The length of the header at the start of `data`, once it is all there.
pub fn header(data: &[u8]) -> Result<Option<usize>> {
    if data.len() < SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if &data[..SIGNATURE.len()] != SIGNATURE {
        return Err(bad("COPY file signature not recognized"));
    }
    let at = SIGNATURE.len();
    let flags = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    if flags & (1 << 16) != 0 {
        return Err(bad("COPY data with OIDs is not supported"));
    }
    let ext = u32::from_be_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
    let len = at + 8 + ext as usize;
    Ok((data.len() >= len).then_some(len))
}

/// The next row (or the trailer) at the start of `data`.
pub fn row(data: &[u8], columns: usize) -> Result<Piece<'_>> {
    if data.len() < 2 {
        return Ok(Piece::Incomplete);
    }
    let count = i16::from_be_bytes([data[0], data[1]]);
    if count == -1 {
        return Ok(Piece::End(2));
    }
    if count < 0 || count as usize != columns {
        return Err(bad(format!(
            "row field count is {count}, expected {columns}"
        )));
    }
    let mut at = 2;
    let mut fields = Vec::with_capacity(columns);
    for _ in 0..columns {
        let Some(len) = data.get(at..at + 4) else {
            return Ok(Piece::Incomplete);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad(format!("invalid field size {len}")))?;
        let Some(bytes) = data.get(at..at + len) else {
            return Ok(Piece::Incomplete);
        };
        fields.push(Some(bytes));
        at += len;
    }
    Ok(Piece::Row(fields, at))
}

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| {
        bad(format!(
            "incorrect binary data format: {what} takes {N} bytes, got {}",
            bytes.len()
        ))
    })
}

/// The text of a field read as `t` (the column's type), appended to `out`.
pub fn field_text(bytes: &[u8], t: &DataType, out: &mut String) -> Result<()> {
    use std::fmt::Write;
    match t {
        DataType::Boolean => out.push_str(if fixed::<1>(bytes, "boolean")?[0] != 0 {
            "t"
        } else {
            "f"
        }),
        DataType::Int16 => {
            let _ = write!(out, "{}", i16::from_be_bytes(fixed(bytes, "smallint")?));
        }
        DataType::Int32 => {
            let _ = write!(out, "{}", i32::from_be_bytes(fixed(bytes, "integer")?));
        }
        DataType::Int64 => {
            let _ = write!(out, "{}", i64::from_be_bytes(fixed(bytes, "bigint")?));
        }
        DataType::Float32 => {
            let _ = write!(out, "{}", f32::from_be_bytes(fixed(bytes, "real")?));
        }
        DataType::Float64 => {
            let _ = write!(
                out,
                "{}",
                f64::from_be_bytes(fixed(bytes, "double precision")?)
            );
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = std::str::from_utf8(bytes).map_err(|_| EddyError::Data {
                code: "22021",
                message: "invalid byte sequence for encoding \"UTF8\"".into(),
            })?;
            out.push_str(s);
        }
        DataType::Timestamp(_, tz) => {
            let micros = i64::from_be_bytes(fixed(bytes, "timestamp")?);
            let ts = micros
                .checked_add(PG_EPOCH_MICROS)
                .and_then(chrono::DateTime::from_timestamp_micros)
                .ok_or_else(|| EddyError::DatetimeOverflow("timestamp out of range".into()))?;
            let _ = write!(out, "{}", ts.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f"));
            if tz.is_some() {
                out.push('Z');
            }
        }
        DataType::Date32 => {
            let days = i32::from_be_bytes(fixed(bytes, "date")?);
            let date = days
                .checked_add(PG_EPOCH_DAYS)
                .and_then(|d| chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163))
                .ok_or_else(|| EddyError::DatetimeOverflow("date out of range".into()))?;
            let _ = write!(out, "{date}");
        }
        DataType::Decimal128(..) => numeric_text(bytes, out)?,
        other => {
            return Err(EddyError::not_supported(format!(
                "COPY FROM STDIN in binary format into a column of type {other}"
            )))
        }
    }
    Ok(())
}

/// PostgreSQL's binary numeric (digit count, weight, sign, display scale, then base-10000
/// digits) as decimal text.
fn numeric_text(bytes: &[u8], out: &mut String) -> Result<()> {
    let word = |i: usize| -> Result<u16> {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("incorrect binary data format: numeric"))
    };
    let ndigits = usize::from(word(0)?);
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        0x0000 => {}
        0x4000 => out.push('-'),
        0xC000 => {
            out.push_str("NaN");
            return Ok(());
        }
        _ => return Err(bad("incorrect binary data format: numeric sign")),
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<_>>()?;
    // Integer part: base-10000 digits 0..=weight.
    if weight < 0 {
        out.push('0');
    } else {
        for d in 0..=weight as usize {
            let v = digits.get(d).copied().unwrap_or(0);
            if d == 0 {
                out.push_str(&v.to_string());
            } else {
                out.push_str(&format!("{v:04}"));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let first = (weight + 1).max(0) as usize;
        // Leading zero groups when weight < -1.
        for _ in 0..(-(weight + 1)).max(0) {
            frac.push_str("0000");
        }
        for d in digits.iter().skip(first) {
            frac.push_str(&format!("{d:04}"));
        }
        while frac.len() < dscale {
            frac.push('0');
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    fn text(bytes: &[u8], t: DataType) -> String {
        let mut s = String::new();
        field_text(bytes, &t, &mut s).unwrap();
        s
    }

    #[test]
    fn binary_values_read_as_their_text() {
        assert_eq!(text(&42i64.to_be_bytes(), DataType::Int64), "42");
        assert_eq!(text(&(-7i32).to_be_bytes(), DataType::Int32), "-7");
        assert_eq!(text(&[1], DataType::Boolean), "t");
        assert_eq!(text(&2.5f64.to_be_bytes(), DataType::Float64), "2.5");
        assert_eq!(text(b"caf\xc3\xa9", DataType::Utf8), "café");
        // 2026-01-01 00:00:01 is 9497 days and 1 s after 2000-01-01.
        let micros = (9497 * 86_400 + 1) * 1_000_000i64;
        assert_eq!(
            text(
                &micros.to_be_bytes(),
                DataType::Timestamp(TimeUnit::Nanosecond, None)
            ),
            "2026-01-01T00:00:01.000000"
        );
        assert_eq!(text(&9497i32.to_be_bytes(), DataType::Date32), "2026-01-01");
        // numeric 1234.5600: ndigits 2, weight 0, sign +, dscale 4, digits 1234 5600.
        let n: Vec<u8> = [2u16, 0, 0, 4, 1234, 5600]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(text(&n, DataType::Decimal128(10, 4)), "1234.5600");
        // -0.0012: ndigits 1, weight -1, sign -, dscale 4, digit 12.
        let n: Vec<u8> = [1u16, 0xFFFF, 0x4000, 4, 12]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(text(&n, DataType::Decimal128(10, 4)), "-0.0012");
        assert!(field_text(&[0, 1], &DataType::Int64, &mut String::new()).is_err());
    }

    #[test]
    fn rows_and_header_wait_for_whole_pieces() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(header(&data[..10]).unwrap(), None);
        assert_eq!(header(&data).unwrap(), Some(19));
        let mut r = 2i16.to_be_bytes().to_vec();
        r.extend_from_slice(&8i32.to_be_bytes());
        r.extend_from_slice(&5i64.to_be_bytes());
        r.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(row(&r[..7], 2).unwrap(), Piece::Incomplete));
        match row(&r, 2).unwrap() {
            Piece::Row(fields, n) => {
                assert_eq!(n, r.len());
                assert_eq!(fields[0], Some(&5i64.to_be_bytes()[..]));
                assert_eq!(fields[1], None);
            }
            _ => panic!("a row"),
        }
        assert!(matches!(
            row(&(-1i16).to_be_bytes(), 2).unwrap(),
            Piece::End(2)
        ));
        assert!(row(&3i16.to_be_bytes(), 2).is_err());
    }
}
