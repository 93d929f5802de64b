//! A plain-text table for the listing commands: columns as wide as their widest cell, two spaces
//! apart, no trailing blanks; and the columns of a refund in `refund list`.

use chrono::SecondsFormat;
use refundry_ledger::RefundRecord;
use refundry_service::money;

/// The columns of a refund in a listing ([`refund_cells`]); `AMOUNT` is column 3.
pub const REFUND_HEADER: [&str; 6] = [
    "ID",
    "PROVIDER",
    "STATUS",
    "AMOUNT",
    "EXTERNAL ID",
    "CREATED",
];

/// A refund's cells under [`REFUND_HEADER`].
pub fn refund_cells(r: &RefundRecord) -> [String; 6] {
    [
        r.id.clone(),
        r.provider.clone(),
        r.status.as_str().to_owned(),
        format!(
            "{} {}",
            money::format_minor(r.amount, &r.currency),
            r.currency
        ),
        r.external_refund_id.clone(),
        r.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    ]
}

/// Prints `header` and `rows`, the columns whose index is in `right` aligned to the right
/// (amounts, ages), every other one to the left.
pub fn print<const N: usize>(header: [&str; N], rows: &[[String; N]], right: &[usize]) {
    for line in render(header, rows, right) {
        println!("{line}");
    }
}

fn render<const N: usize>(header: [&str; N], rows: &[[String; N]], right: &[usize]) -> Vec<String> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if right.contains(&i) {
                text.push_str(&format!("{cell:>w$}  "));
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    std::iter::once(line(header))
        .chain(
            rows.iter()
                .map(|row| line(std::array::from_fn(|i| row[i].as_str()))),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_and_right_ones_align_right() {
        let rows = [
            ["rf_1".to_owned(), "15.00 KES".to_owned()],
            ["rf_22".to_owned(), "1,500.00 KES".to_owned()],
        ];
        assert_eq!(
            super::render(["ID", "AMOUNT"], &rows, &[1]),
            [
                "ID           AMOUNT",
                "rf_1      15.00 KES",
                "rf_22  1,500.00 KES"
            ]
        );
    }
}
