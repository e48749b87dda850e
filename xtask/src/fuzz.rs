//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (request head, SSE framer,
//! translation both ways, usage extraction, virtual keys), each for a bounded time, and
//! fails when any of them finds a crash.
//!
//! `--smoke` (what CI runs) builds the targets once in the dev profile (debug
//! assertions and overflow checks on, quick to build) and runs each for a few seconds;
//! without it each target runs longer on an optimized build. Inputs the fuzzer finds go
//! to a scratch corpus under `target/fuzz/corpus/<target>`; the committed seeds in
//! `fuzz/corpus/<target>` are only read. A crash leaves its input in
//! `fuzz/artifacts/<target>/` and this command prints how to replay it.
//!
//! Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`;
//! `.ci/run` installs it when missing).
//!
//! Does not own: the targets themselves (`fuzz/fuzz_targets/`).

use anyhow::{Context, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Every fuzz target, as named in `fuzz/Cargo.toml`.
pub(crate) const TARGETS: [&str; 6] =
    ["request_head", "sse_framer", "translate_request", "translate_response", "usage", "virtual_key"];

const USAGE: &str = "usage: cargo xtask fuzz [--smoke] [--seconds N] [--sanitizer none|address] [TARGET...]";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opts {
    /// Short runs on a dev build (CI).
    pub(crate) smoke: bool,
    /// Seconds each target runs.
    pub(crate) seconds: u64,
    /// `none` or `address`.
    pub(crate) sanitizer: String,
    /// Targets to run, in order.
    pub(crate) targets: Vec<String>,
}

/// Parses the arguments after `fuzz`.
pub(crate) fn parse_opts(args: &[String]) -> anyhow::Result<Opts> {
    let mut smoke = false;
    let mut seconds = None;
    // The code under test forbids `unsafe`, so AddressSanitizer would only watch the
    // dependencies' unsafe code, at the price of a slower build and slower runs; it is
    // there for long runs (`--sanitizer address`).
    let mut sanitizer = "none".to_owned();
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--seconds" => {
                let v = it.next().ok_or_else(|| anyhow!("--seconds needs a number"))?;
                let s: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| anyhow!("bad --seconds {v:?}: a whole number of seconds from 1 to 86400"))?;
                seconds = Some(s);
            }
            "--sanitizer" => {
                let v = it.next().ok_or_else(|| anyhow!("--sanitizer needs none or address"))?;
                if !matches!(v.as_str(), "none" | "address") {
                    bail!("bad --sanitizer {v:?}: none or address");
                }
                sanitizer = v.clone();
            }
            "-h" | "--help" => bail!("{USAGE}"),
            t if TARGETS.contains(&t) => targets.push(t.to_owned()),
            other => bail!("unknown option or target {other:?}; {USAGE}; targets: {}", TARGETS.join(", ")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    let seconds = seconds.unwrap_or(if smoke { 10 } else { 300 });
    Ok(Opts { smoke, seconds, sanitizer, targets })
}

/// What one target's run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The target.
    pub(crate) target: String,
    /// Inputs libFuzzer ran (`Done N runs` or the last status line), if it said.
    pub(crate) runs: Option<u64>,
    /// Wall time of the run.
    pub(crate) seconds: u64,
    /// Whether the run ended without a crash.
    pub(crate) ok: bool,
}

/// The number of inputs libFuzzer reports having run: its `Done N runs in S second(s)`
/// line, or else the `#N` of its last status line.
pub(crate) fn parse_runs(log: &str) -> Option<u64> {
    let done = log.lines().rev().find_map(|l| {
        let rest = l.strip_prefix("Done ")?;
        rest.split_whitespace().next()?.parse().ok()
    });
    done.or_else(|| {
        log.lines().rev().find_map(|l| {
            let rest = l.strip_prefix('#')?;
            let n = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            n.parse().ok()
        })
    })
}

/// The summary table printed at the end.
pub(crate) fn summary(outcomes: &[Outcome]) -> String {
    let mut s = String::from("| target | inputs run | seconds | result |\n|---|---:|---:|---|\n");
    for o in outcomes {
        let runs = o.runs.map_or_else(|| "?".to_owned(), |r| r.to_string());
        let result = if o.ok { "ok" } else { "CRASH" };
        s.push_str(&format!("| {} | {runs} | {} | {result} |\n", o.target, o.seconds));
    }
    s
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.args(["+nightly", "fuzz"]).current_dir(root);
    // `cargo xtask` runs under the stable toolchain's cargo, which exports these; the
    // nightly cargo must choose its own.
    for v in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO_MANIFEST_DIR", "CARGO_TARGET_DIR"] {
        c.env_remove(v);
    }
    c
}

fn build_flags(opts: &Opts, target_dir: &Path) -> Vec<String> {
    let mut f = vec!["--sanitizer".to_owned(), opts.sanitizer.clone(), "--target-dir".to_owned()];
    f.push(target_dir.display().to_string());
    if opts.smoke {
        f.push("--dev".to_owned());
    } else {
        // Optimized, with debug assertions (and so overflow checks) still on.
        f.push("--debug-assertions".to_owned());
    }
    f
}

/// Entry point of `cargo xtask fuzz`.
pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let opts = parse_opts(args)?;
    let ok = cargo_fuzz(root).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        bail!(
            "cargo-fuzz or the nightly toolchain is missing: `rustup toolchain install nightly` and \
             `cargo install cargo-fuzz --locked`"
        );
    }
    let target_dir = root.join("target").join("fuzz");
    let flags = build_flags(&opts, &target_dir);

    let t = Instant::now();
    eprintln!("fuzz: building {} target(s) ({})…", opts.targets.len(), if opts.smoke { "dev" } else { "release" });
    let st = cargo_fuzz(root).arg("build").args(&flags).status().context("running cargo fuzz build")?;
    if !st.success() {
        bail!("cargo fuzz build failed ({st})");
    }
    eprintln!("fuzz: built in {:.0} s", t.elapsed().as_secs_f64());

    let logs = target_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut outcomes = Vec::new();
    for target in &opts.targets {
        outcomes.push(run_one(root, &opts, &flags, &target_dir, &logs, target)?);
    }
    let table = summary(&outcomes);
    std::io::Write::write_all(&mut std::io::stdout(), table.as_bytes())?;
    let crashed: Vec<&str> = outcomes.iter().filter(|o| !o.ok).map(|o| o.target.as_str()).collect();
    if crashed.is_empty() {
        eprintln!("fuzz: no crash in {} target(s), {} s each", outcomes.len(), opts.seconds);
        Ok(())
    } else {
        bail!(
            "fuzz: crash in {}; inputs in fuzz/artifacts/<target>/, replay with \
             `cargo +nightly fuzz run <target> <artifact>`; logs in {}",
            crashed.join(", "),
            logs.display()
        )
    }
}

fn run_one(
    root: &Path,
    opts: &Opts,
    flags: &[String],
    target_dir: &Path,
    logs: &Path,
    target: &str,
) -> anyhow::Result<Outcome> {
    let scratch = target_dir.join("corpus").join(target);
    std::fs::create_dir_all(&scratch)?;
    let seeds: PathBuf = root.join("fuzz").join("corpus").join(target);
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    eprintln!("fuzz: {target} for {} s", opts.seconds);
    let t = Instant::now();
    let st = cargo_fuzz(root)
        .arg("run")
        .args(flags)
        .arg(target)
        .arg(&scratch)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", opts.seconds))
        // One slow input is a finding too: nothing here should take a second.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-max_len=262144")
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let seconds = t.elapsed().as_secs();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !st.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("fuzz: {target} failed ({st}); last lines of {}:", log_path.display());
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }
    Ok(Outcome { target: target.to_owned(), runs: parse_runs(&text), seconds, ok: st.success() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn smoke_runs_every_target_briefly_and_a_plain_run_longer() {
        let smoke = parse_opts(&args(&["--smoke"])).unwrap();
        assert!(smoke.smoke);
        assert_eq!(smoke.seconds, 10);
        assert_eq!(smoke.targets, TARGETS.to_vec());
        assert_eq!(smoke.sanitizer, "none");
        let long = parse_opts(&[]).unwrap();
        assert!(!long.smoke);
        assert_eq!(long.seconds, 300);
    }

    #[test]
    fn targets_and_limits_are_chosen_and_checked() {
        let o = parse_opts(&args(&["usage", "--seconds", "3", "--sanitizer", "address", "sse_framer"])).unwrap();
        assert_eq!(o.targets, vec!["usage", "sse_framer"]);
        assert_eq!((o.seconds, o.sanitizer.as_str()), (3, "address"));
        for bad in [&["nope"][..], &["--seconds", "0"], &["--seconds"], &["--seconds", "x"], &["--sanitizer", "thread"]]
        {
            assert!(parse_opts(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_run_count_comes_from_libfuzzers_final_line_or_last_status() {
        let done = "#2\tINITED cov: 10\n#4096\tpulse  cov: 12\nDone 123456 runs in 10 second(s)\n";
        assert_eq!(parse_runs(done), Some(123_456));
        let crashed = "#2\tINITED cov: 10\n#777\tNEW    cov: 12 ft: 3\n==1== ERROR: libFuzzer: deadly signal\n";
        assert_eq!(parse_runs(crashed), Some(777));
        assert_eq!(parse_runs("error: could not compile"), None);
    }

    #[test]
    fn the_summary_names_each_target_and_flags_crashes() {
        let s = summary(&[
            Outcome { target: "usage".into(), runs: Some(10), seconds: 10, ok: true },
            Outcome { target: "sse_framer".into(), runs: None, seconds: 2, ok: false },
        ]);
        assert!(s.contains("| usage | 10 | 10 | ok |"), "{s}");
        assert!(s.contains("| sse_framer | ? | 2 | CRASH |"), "{s}");
    }

    #[test]
    fn every_target_is_declared_in_the_fuzz_manifest_with_seeds() {
        let root = crate::workspace_root();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t} missing from fuzz/Cargo.toml");
            let seeds = std::fs::read_dir(root.join("fuzz/corpus").join(t)).unwrap().count();
            assert!(seeds > 0, "{t} has no committed seeds");
        }
    }
}
