//! The tidy check: the workspace's Architecture Invariants, read from `cargo metadata`
//! and from the source tree (plus one `cargo tree` for what `tollctl` builds).

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that hold domain logic: they may use `tollgate-core` and nothing else internal.
const DOMAIN: &[&str] =
    &["tollgate-keys", "tollgate-budgets", "tollgate-routing", "tollgate-audit", "tollgate-providers"];

/// Extra internal dependencies a crate may have beyond the general rule, each with the
/// reason it is allowed (the obvious one-way arrows of design.md §2).
const ALLOWED_EXTRA: &[(&str, &str, &str)] =
    &[("tollgate-metering", "tollgate-providers", "metering reads the providers' usage types")];

/// What the data plane must never reach: the database, the control plane, the REST stack.
const DATAPLANE_FORBIDDEN: &[&str] =
    &["tollgate-store", "tollgate-migrations", "tollgate-controlplane", "sea-orm", "sea-orm-migration", "axum", "sqlx"];

/// Crates published for other Rust services to embed (the budgets crate and what it
/// needs); every other internal crate sets `publish = false`.
const PUBLISHABLE: &[&str] = &["tollgate-core", "tollgate-budgets"];

/// The only crates allowed to know sea-orm.
const SEA_ORM_OWNERS: &[&str] = &["tollgate-store", "tollgate-migrations"];

/// What `tollctl`, a gRPC client only, must not build: the domain crates with state and
/// what they pull (Redis counters, tiktoken, the upstream HTTPS client). It gets the wire
/// types from `tollgate-proto` without its `convert` feature.
const TOLLCTL_FORBIDDEN: &[&str] =
    &["tollgate-budgets", "tollgate-metering", "tollgate-providers", "redis", "tiktoken-rs", "hyper-rustls"];

/// Server stacks and the application error crate: for binaries, the planes and tests,
/// never for core or a domain crate (those stay usable from any service).
const LIBRARY_FORBIDDEN: &[&str] = &["axum", "tonic", "anyhow"];

/// One workspace member as tidy sees it.
#[derive(Debug)]
struct Member {
    name: String,
    manifest: PathBuf,
    publish: bool,
    /// (dependency name, kind: "normal" | "dev" | "build", is internal)
    deps: Vec<(String, String, bool)>,
    /// Source roots of the crate's lib and bin targets.
    roots: Vec<PathBuf>,
    is_lib: bool,
}

/// Runs every check and returns the problems found, each naming its place.
pub(crate) fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let members = members(root)?;
    let mut problems = Vec::new();
    dependency_rules(&members, &mut problems);
    tollctl_closure(root, &mut problems)?;
    for m in &members {
        pinned_once(m, &mut problems)?;
        source_docs(m, &mut problems)?;
    }
    Ok(problems)
}

fn members(root: &Path) -> anyhow::Result<Vec<Member>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("cargo metadata printed invalid JSON")?;
    let packages = meta["packages"].as_array().context("cargo metadata has no packages")?;
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut members = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        // `publish = false` shows as an empty list of registries.
        let publish = !p["publish"].as_array().is_some_and(Vec::is_empty);
        let deps = p["dependencies"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .map(|d| {
                        let dep = d["name"].as_str().unwrap_or_default().to_owned();
                        let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                        let internal = names.contains(&dep.as_str());
                        (dep, kind, internal)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut roots = Vec::new();
        let mut is_lib = false;
        for t in p["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = t["kind"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if kinds.iter().any(|k| *k == "lib" || *k == "proc-macro") {
                is_lib = true;
            }
            if kinds.iter().any(|k| matches!(*k, "lib" | "bin" | "proc-macro")) {
                roots.push(PathBuf::from(t["src_path"].as_str().unwrap_or_default()));
            }
        }
        members.push(Member { name, manifest, publish, deps, roots, is_lib });
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

fn dependency_rules(members: &[Member], problems: &mut Vec<String>) {
    for m in members {
        let normal: Vec<&str> =
            m.deps.iter().filter(|(_, kind, _)| kind != "dev").map(|(name, _, _)| name.as_str()).collect();
        let internal: Vec<&str> = m
            .deps
            .iter()
            .filter(|(_, kind, internal)| *internal && kind != "dev")
            .map(|(name, _, _)| name.as_str())
            .collect();

        if m.name == "tollgate-core" && !internal.is_empty() {
            problems.push(format!("tollgate-core must not depend on other workspace crates, found {internal:?}"));
        }
        let domain_like = DOMAIN.contains(&m.name.as_str()) || m.name == "tollgate-metering";
        if domain_like || m.name == "tollgate-core" {
            for dep in normal.iter().filter(|d| LIBRARY_FORBIDDEN.contains(d)) {
                problems.push(format!(
                    "{}: core and domain crates must not depend on {dep} (server stacks and anyhow belong to the planes and bins)",
                    m.name
                ));
            }
        }
        if m.name == "tollctl" {
            for dep in normal.iter().filter(|d| TOLLCTL_FORBIDDEN.contains(d)) {
                problems.push(format!("tollctl is a gRPC client only: it must not depend on {dep}"));
            }
        }
        if domain_like {
            for dep in &internal {
                let extra = ALLOWED_EXTRA.iter().any(|(from, to, _)| *from == m.name && to == dep);
                if *dep != "tollgate-core" && !extra {
                    problems.push(format!(
                        "{}: domain crates depend only on tollgate-core (design.md §2), found {dep}",
                        m.name
                    ));
                }
            }
        }
        if m.name == "tollgate-dataplane" {
            for dep in &normal {
                if DATAPLANE_FORBIDDEN.contains(dep) {
                    problems.push(format!("tollgate-dataplane must never depend on {dep}: nothing on the request path touches the database or the control plane"));
                }
            }
        }
        for dep in &normal {
            if dep.starts_with("sea-orm") && !SEA_ORM_OWNERS.contains(&m.name.as_str()) {
                problems.push(format!("{}: only {SEA_ORM_OWNERS:?} may know sea-orm, found {dep}", m.name));
            }
            if *dep == "tollgate-testkit" {
                problems.push(format!("{}: tollgate-testkit may only be a dev-dependency", m.name));
            }
        }
        if PUBLISHABLE.contains(&m.name.as_str()) {
            if !m.publish {
                problems.push(format!("{} must stay publishable (no `publish = false`)", m.name));
            }
            for dep in &internal {
                if !PUBLISHABLE.contains(dep) {
                    problems.push(format!("{}: a publishable crate cannot depend on the unpublished {dep}", m.name));
                }
            }
        } else if m.publish && m.name.starts_with("tollgate") {
            problems.push(format!("{}: internal crates set `publish = false`", m.name));
        }
    }
}

/// What `tollctl` builds (normal dependencies, resolved as `cargo build -p tollctl`
/// resolves features) holds nothing of [`TOLLCTL_FORBIDDEN`]: catches a forbidden crate
/// arriving through another one, e.g. `tollgate-proto` with `convert` on.
fn tollctl_closure(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["tree", "-p", "tollctl", "-e", "normal", "--prefix", "none", "--format", "{p}", "--offline"])
        .current_dir(root)
        .output()
        .context("cannot run cargo tree")?;
    if !out.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    problems.extend(forbidden_in_tree(&String::from_utf8_lossy(&out.stdout)));
    Ok(())
}

/// The forbidden crates named in `cargo tree --prefix none --format {p}` output
/// (`name v1.2.3 (path)` per line), each once.
fn forbidden_in_tree(tree: &str) -> Vec<String> {
    let mut found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| TOLLCTL_FORBIDDEN.contains(name))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
        .into_iter()
        .map(|name| format!("tollctl must not build {name}, not even through another crate (`cargo tree -p tollctl -e normal -i {name}`)"))
        .collect()
}

/// Every dependency of a member names `workspace = true`: versions are pinned once, at
/// the root.
fn pinned_once(m: &Member, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&m.manifest).with_context(|| format!("cannot read {}", m.manifest.display()))?;
    let mut in_deps = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            let section = line.trim_matches(|c| c == '[' || c == ']');
            in_deps = section.ends_with("dependencies");
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        if !(key.trim_end().ends_with(".workspace") || compact.contains("workspace=true")) {
            problems.push(format!(
                "{}:{}: `{}` does not use `workspace = true`; pin versions once in the root [workspace.dependencies]",
                m.manifest.display(),
                i + 1,
                key.trim()
            ));
        }
    }
    Ok(())
}

/// Every source file under a target's `src/` opens with a `//!` doc; every library root
/// forbids unsafe code.
fn source_docs(m: &Member, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let mut files = BTreeMap::new();
    for root in &m.roots {
        if let Some(dir) = root.parent() {
            collect_rs(dir, &mut files)?;
        }
    }
    for (path, text) in &files {
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{}: opens without a `//!` doc saying what it owns", path.display()));
        }
    }
    if m.is_lib {
        for root in &m.roots {
            if root.file_name().is_some_and(|f| f == "lib.rs") {
                let text = files.get(root).cloned().unwrap_or_default();
                if !text.contains("#![forbid(unsafe_code)]") {
                    problems.push(format!("{}: library roots carry #![forbid(unsafe_code)]", root.display()));
                }
            }
        }
    }
    Ok(())
}

fn collect_rs(dir: &Path, out: &mut BTreeMap<PathBuf, String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") && !out.contains_key(&path) {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            out.insert(path, text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_is_tidy() {
        let problems = check(&crate::workspace_root()).unwrap();
        assert!(problems.is_empty(), "tidy found problems:\n{}", problems.join("\n"));
    }

    fn member(name: &str, deps: &[(&str, &str, bool)]) -> Member {
        Member {
            name: name.to_owned(),
            manifest: PathBuf::new(),
            publish: PUBLISHABLE.contains(&name),
            deps: deps.iter().map(|(n, k, i)| ((*n).to_owned(), (*k).to_owned(), *i)).collect(),
            roots: Vec::new(),
            is_lib: true,
        }
    }

    #[test]
    fn sideways_and_backwards_dependencies_are_reported() {
        let members = vec![
            member("tollgate-core", &[]),
            member("tollgate-budgets", &[("tollgate-core", "normal", true), ("tollgate-keys", "normal", true)]),
            member("tollgate-dataplane", &[("tollgate-store", "normal", true), ("axum", "normal", false)]),
            member("tollgate-routing", &[("sea-orm", "normal", false)]),
            member("tollgate-keys", &[("tollgate-testkit", "normal", true)]),
            member("tollgate-metering", &[("tollgate-providers", "normal", true), ("tollgate-testkit", "dev", true)]),
        ];
        let mut problems = Vec::new();
        dependency_rules(&members, &mut problems);
        let joined = problems.join("\n");
        assert!(joined.contains("tollgate-budgets: domain crates depend only on tollgate-core"), "{joined}");
        assert!(joined.contains("never depend on tollgate-store"), "{joined}");
        assert!(joined.contains("never depend on axum"), "{joined}");
        assert!(joined.contains("tollgate-routing: only"), "{joined}");
        assert!(joined.contains("tollgate-keys: tollgate-testkit may only be a dev-dependency"), "{joined}");
        assert!(joined.contains("cannot depend on the unpublished tollgate-keys"), "{joined}");
        assert!(!joined.contains("tollgate-metering"), "metering → providers is allowed: {joined}");
        // keys → testkit breaks two rules (sideways and not dev-only).
        assert_eq!(problems.len(), 7, "{joined}");
    }

    #[test]
    fn tollctl_and_library_crates_are_kept_light() {
        let members = vec![
            member(
                "tollctl",
                &[
                    ("tollgate-proto", "normal", true),
                    ("tollgate-budgets", "normal", true),
                    ("redis", "normal", false),
                    ("tollgate-metering", "dev", true),
                ],
            ),
            member("tollgate-core", &[("anyhow", "normal", false)]),
            member("tollgate-routing", &[("tollgate-core", "normal", true), ("tonic", "normal", false)]),
            member("tollgate-keys", &[("anyhow", "dev", false)]),
            member("tollgate-dataplane", &[("tonic", "normal", false), ("anyhow", "normal", false)]),
        ];
        let mut problems = Vec::new();
        dependency_rules(&members, &mut problems);
        let joined = problems.join("\n");
        assert!(joined.contains("tollctl is a gRPC client only: it must not depend on tollgate-budgets"), "{joined}");
        assert!(joined.contains("it must not depend on redis"), "{joined}");
        assert!(joined.contains("tollgate-core: core and domain crates must not depend on anyhow"), "{joined}");
        assert!(joined.contains("tollgate-routing: core and domain crates must not depend on tonic"), "{joined}");
        // Dev-dependencies (tests) and the planes may use them.
        assert!(!joined.contains("tollgate-metering") && !joined.contains("tollgate-keys"), "{joined}");
        assert!(!joined.contains("tollgate-dataplane"), "{joined}");
        assert_eq!(problems.len(), 4, "{joined}");

        let tree = "tollctl v0.0.0 (/w/bins/tollctl)\ntollgate-proto v0.0.0 (/w/crates/tollgate-proto)\n\
                    tollgate-budgets v0.1.0 (/w/crates/tollgate-budgets)\nredis v1.8.0\nredis v1.8.0\ntonic v0.14.2\n";
        let found = forbidden_in_tree(tree);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("must not build redis") && found[1].contains("tollgate-budgets"), "{found:?}");
        assert!(forbidden_in_tree("tollctl v0.0.0 (/w)\ntonic v0.14.2\n").is_empty());
    }

    #[test]
    fn unpinned_dependencies_and_undocumented_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let manifest = dir.join("Cargo.toml");
        std::fs::write(
            &manifest,
            "[package]\nname = \"x\"\n[dependencies]\nserde.workspace = true\nfoo = \"1\"\nbar = { version = \"2\" }\nbaz = { workspace = true, features = [\"a\"] }\n[[test]]\nname = \"it\"\npath = \"tests/it/main.rs\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("src/lib.rs"), "//! x\nmod a;\n").unwrap();
        std::fs::write(dir.join("src/a.rs"), "fn f() {}\n").unwrap();
        let m = Member {
            name: "x".into(),
            manifest,
            publish: false,
            deps: Vec::new(),
            roots: vec![dir.join("src/lib.rs")],
            is_lib: true,
        };
        let mut problems = Vec::new();
        pinned_once(&m, &mut problems).unwrap();
        source_docs(&m, &mut problems).unwrap();
        let joined = problems.join("\n");
        assert!(joined.contains("`foo`") && joined.contains("`bar`"), "{joined}");
        assert!(!joined.contains("`baz`") && !joined.contains("`serde`") && !joined.contains("`path`"), "{joined}");
        assert!(joined.contains("a.rs: opens without"), "{joined}");
        assert!(joined.contains("forbid(unsafe_code)"), "{joined}");
        assert_eq!(problems.len(), 4, "{joined}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
