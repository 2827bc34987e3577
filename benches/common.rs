//! Shared by the benchmarks: machine facts, peak memory, input files.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// The number of CPU cores, printed with every figure.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Resets the process's peak RSS (Linux: `clear_refs` 5), so that what
/// follows is measured on its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS in MB since the last reset (Linux `VmHWM`).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// How many rows a benchmark uses: `BENCH_ROWS` or the default.
pub fn rows(default: usize) -> usize {
    std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a realistic meetings CSV of `n` valid rows (streaming).
pub fn write_meetings_csv(path: &Path, n: usize) {
    let base = chrono::Utc::now() + chrono::Duration::days(2);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "title,start,duration,timezone,hostEmail,agenda,invitees,sendEmail"
    )
    .unwrap();
    for i in 0..n {
        // Office hours only: 9:00 to 16:45 on the next 400 days.
        let day = base.date_naive() + chrono::Duration::days((i % 400) as i64);
        let start = day
            .and_hms_opt(9 + (i % 8) as u32, 15 * (i % 4) as u32, 0)
            .unwrap();
        writeln!(
            w,
            "Customer review {i},{},45,Europe/Berlin,host{}@acme.example.com,Quarterly numbers and next steps,Ann Lee <ann{}@acme.example.com>; bob{}@acme.example.com,false",
            start.format("%Y-%m-%d %H:%M"),
            i % 500,
            i % 97,
            i % 89
        )
        .unwrap();
    }
    w.flush().unwrap();
}
