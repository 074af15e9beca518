//! kubectl's table layout: upper-case headers, columns padded to their widest cell, three
//! spaces apart.

/// The table of `header` and `rows` (each row as many cells as the header), one line each.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_under_their_headers() {
        let rows = vec![
            vec!["hq".to_string(), "12/20".to_string()],
            vec!["warehouse-east".to_string(), "0/3".to_string()],
        ];
        assert_eq!(
            super::render(&["SITE", "REGISTERED"], &rows),
            "SITE             REGISTERED\nhq               12/20\nwarehouse-east   0/3\n"
        );
    }
}
