//! The benchmark table: one row per figure, with its baseline, ratio and target.

pub struct Row {
    pub group: String,
    pub name: String,
    pub value: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

impl Row {
    pub fn ratio(
        group: &str,
        name: &str,
        value: String,
        baseline: String,
        ratio: f64,
        target: &str,
        met: bool,
    ) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            value,
            baseline,
            ratio: Some(ratio),
            target: target.into(),
            met: Some(met),
        }
    }

    /// A ratio against a baseline, with no target of its own.
    pub fn compare(group: &str, name: &str, value: String, baseline: String, ratio: f64) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            value,
            baseline,
            ratio: Some(ratio),
            target: String::new(),
            met: None,
        }
    }

    pub fn target(group: &str, name: &str, value: String, target: &str, met: bool) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            value,
            baseline: String::new(),
            ratio: None,
            target: target.into(),
            met: Some(met),
        }
    }

    pub fn info(group: &str, name: &str, value: String) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            value,
            baseline: String::new(),
            ratio: None,
            target: String::new(),
            met: None,
        }
    }
}

pub fn print(rows: &[Row]) {
    let w = |f: &dyn Fn(&Row) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let wn = w(&|r| r.name.chars().count()).max(11);
    let wv = w(&|r| r.value.chars().count()).max(6);
    let wb = w(&|r| r.baseline.chars().count()).max(8);
    let wt = w(&|r| r.target.chars().count()).max(6);
    println!(
        "| {:<wn$} | {:<wv$} | {:<wb$} | {:>6} | {:<wt$} | met |",
        "measurement", "pptpgw", "baseline", "ratio", "target"
    );
    println!(
        "|{}|{}|{}|{}|{}|-----|",
        "-".repeat(wn + 2),
        "-".repeat(wv + 2),
        "-".repeat(wb + 2),
        "-".repeat(8),
        "-".repeat(wt + 2)
    );
    let mut group = "";
    for r in rows {
        if r.group != group {
            group = &r.group;
            println!(
                "| **{}**{} | | | | | |",
                r.group,
                " ".repeat(wn.saturating_sub(r.group.len() + 4))
            );
        }
        let ratio = r.ratio.map_or(String::new(), |x| format!("{x:.2}×"));
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!(
            "| {:<wn$} | {:<wv$} | {:<wb$} | {:>6} | {:<wt$} | {:<3} |",
            r.name, r.value, r.baseline, ratio, r.target, met
        );
    }
}
