//! A strict check of the Prometheus/OpenMetrics text exposition format,
//! shared by the API test binaries.

/// A parser of the OpenMetrics / Prometheus text format: every line is a
/// comment (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) or a sample
/// `name{label="value",...} number`; samples belong to a declared family.
pub type Sample = (String, Vec<(String, String)>, f64);

pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut families = std::collections::HashMap::new();
    let mut samples = Vec::new();
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "content after # EOF");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("metric name");
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(
                    [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "unknown",
                        "stateset",
                        "gaugehistogram"
                    ]
                    .contains(&t),
                    "{line}"
                );
                families.insert(name.to_string(), t.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect(line);
                let mut labels = Vec::new();
                let mut rest = l;
                while !rest.is_empty() {
                    let (k, v) = rest.split_once("=\"").expect(line);
                    // Values may hold escaped quotes.
                    let mut end = 0;
                    let bytes = v.as_bytes();
                    while end < bytes.len()
                        && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
                    {
                        end += 1;
                    }
                    labels.push((k.to_string(), v[..end].to_string()));
                    rest = v[end + 1..].trim_start_matches(',');
                }
                (n, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = families
            .keys()
            .find(|f| {
                name == f.as_str()
                    || name.strip_prefix(f.as_str()).is_some_and(|s| {
                        ["_total", "_created", "_count", "_sum", "_bucket"].contains(&s)
                    })
            })
            .unwrap_or_else(|| panic!("sample of an undeclared family: {line}"));
        let _ = family;
        samples.push((name.to_string(), labels, value));
    }
    assert!(eof, "no # EOF");
    samples
}
