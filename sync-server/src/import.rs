//! `sync-server import <file>`: loads products and stock from a JSON array or a CSV file with the
//! columns `sku,name,price_amount,currency,stock`. Every row is checked first and bad rows are
//! reported by line number; nothing is loaded unless every row is good.

use crate::catalog::{NewProduct, parse_product_list};
use crate::config::Settings;
use crate::durable::Durable;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::path::Path;

/// Shows at most this many bad rows; the count of the rest follows.
const MAX_REPORTED: usize = 50;

pub async fn run(settings: &Settings, file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let is_csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) || !text.trim_start().starts_with('[');
    let rows = if is_csv { parse_csv(&text, settings) } else { parse_json(&text, settings) }.map_err(|errors| report(&errors))?;
    let durable = Durable::connect(&settings.database_url).await.map_err(|e| format!("CARTSYNC_DATABASE_URL: {e}"))?;
    let bar = if rows.len() >= 1000 { ProgressBar::new(rows.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} products ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let n = durable.import_products(&rows, crate::clock::now(), |done| bar.set_position(done as u64)).await.map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    Ok(format!("imported {n} products from {}", file.display()))
}

fn report(errors: &[String]) -> String {
    let mut out = format!("{} bad rows; nothing was imported:\n", errors.len());
    for e in errors.iter().take(MAX_REPORTED) {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
    if errors.len() > MAX_REPORTED {
        out.push_str(&format!("  … and {} more\n", errors.len() - MAX_REPORTED));
    }
    out.trim_end().to_owned()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// A JSON array of `{"sku", "name", "price": Money, "stock"}`; rows are located by the line on
/// which each object starts.
pub fn parse_json(text: &str, settings: &Settings) -> Result<Vec<NewProduct>, Vec<String>> {
    let raws: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| vec![format!("line {}: not a JSON array of products: {e}", e.line())])?;
    let mut lines = Vec::with_capacity(raws.len());
    let mut values = Vec::with_capacity(raws.len());
    for raw in &raws {
        let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        lines.push(line_of(text, offset));
        values.push(serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null));
    }
    parse_product_list(&values, settings.currency, |i| format!("line {}", lines[i]))
}

/// CSV with a header row naming `sku,name,price_amount,currency,stock` (in any order).
pub fn parse_csv(text: &str, settings: &Settings) -> Result<Vec<NewProduct>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| vec![format!("line 1: {e}")])?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(sku), Some(name), Some(amount), Some(currency), Some(stock)) =
        (col("sku"), col("name"), col("price_amount"), col("currency"), col("stock"))
    else {
        return Err(vec!["line 1: the header must name sku,name,price_amount,currency,stock".into()]);
    };
    let number = |s: &str| s.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(s.to_owned()));
    let mut values = Vec::new();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        match record {
            Ok(r) => {
                let field = |i: usize| r.get(i).unwrap_or("");
                lines.push(r.position().map_or(0, |p| p.line() as usize));
                values.push(json!({
                    "sku": field(sku), "name": field(name), "stock": number(field(stock)),
                    "price": {"amount": number(field(amount)), "currency": field(currency)},
                }));
            }
            Err(e) => errors.push(format!("line {}: {e}", e.position().map_or(0, |p| p.line()))),
        }
    }
    let parsed = parse_product_list(&values, settings.currency, |i| format!("line {}", lines[i]));
    match (parsed, errors.is_empty()) {
        (Ok(rows), true) => Ok(rows),
        (Ok(_), false) => Err(errors),
        (Err(more), _) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_are_named_by_their_line() {
        let s = Settings::defaults();
        let text = "[\n {\"sku\": \"A\", \"name\": \"a\", \"price\": {\"amount\": 100, \"currency\": \"USD\"}, \"stock\": 3},\n {\"sku\": \"bad sku\", \"name\": \"b\", \"price\": {\"amount\": 1, \"currency\": \"USD\"}}\n]";
        let errors = parse_json(text, &s).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("line 3:"), "{errors:?}");
        assert!(parse_json("[{]", &s).unwrap_err()[0].starts_with("line 1:"));
    }

    #[test]
    fn csv_rows_are_named_by_their_line() {
        let s = Settings::defaults();
        let ok = parse_csv("sku,name,price_amount,currency,stock\nA,Tee,1999,USD,10\nB,Mug,500,USD,0\n", &s).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[0].price.amount(), ok[0].stock), (1999, 10));
        let errors =
            parse_csv("sku,name,price_amount,currency,stock\nA,Tee,19.99,USD,10\nB,Mug,500,USD,-1\nC,Cap,5,EUR,1\n", &s).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 2:") && errors[1].starts_with("line 3:") && errors[2].starts_with("line 4:"), "{errors:?}");
        assert!(parse_csv("sku,name\nA,b\n", &s).is_err());
    }
}
