//! Runs the ownership protocol's deterministic simulator for as long as
//! asked: `cargo run --release --example ownership_sim -- --schedules
//! 1000000 [--seed FIRST] [--threads N] [--no-prune]`. Prints the counts,
//! or the first broken invariant with its seed and trace (exit 1).

use std::process::ExitCode;

use oz_agent_worker::execute::ownership::sim::{self, Options, Stats};

fn main() -> ExitCode {
    let mut schedules: u64 = 100_000;
    let mut first: u64 = 1;
    let mut threads: u64 = 2;
    let mut prune = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--schedules" => schedules = value().unwrap_or(schedules),
            "--seed" => first = value().unwrap_or(first),
            "--threads" => threads = value().unwrap_or(threads).max(1),
            "--no-prune" => prune = false,
            other => {
                eprintln!("unknown argument {other:?}; see the file's doc");
                return ExitCode::from(2);
            }
        }
    }
    let opts = Options {
        prune,
        ..Options::default()
    };
    let started = std::time::Instant::now();
    let per = schedules.div_ceil(threads);
    let runs: Vec<_> = (0..threads)
        .map(|t| {
            let from = first + t * per;
            let count = per.min((first + schedules).saturating_sub(from));
            let o = opts.clone();
            std::thread::spawn(move || sim::run_many(from, count, &o))
        })
        .collect();
    let mut total = Stats::default();
    for r in runs {
        match r.join().expect("simulator thread") {
            Ok(s) => total.add(&s),
            Err(failure) => {
                println!("{failure}");
                return ExitCode::from(1);
            }
        }
    }
    println!(
        "ownership simulator: {} schedules, {} steps, {} invariant checks, {} terminal messages ({} executions reported twice after a lost lease{}) in {:.1}s",
        total.schedules,
        total.steps,
        total.checks,
        total.reports,
        total.duplicates,
        if prune {
            format!(
                ", {} starts after a prune erased a record",
                total.after_prune
            )
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    for (fault, n) in &total.faults {
        println!("  {fault}: {n}");
    }
    ExitCode::SUCCESS
}
