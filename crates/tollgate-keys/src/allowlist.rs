//! Model allowlists: exact names and `*` / `?` globs.

/// Which public model names a key may use. Empty means every model in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelAllowlist {
    exact: Vec<Box<str>>,
    globs: Vec<Box<str>>,
}

impl ModelAllowlist {
    /// Builds an allowlist from patterns; a pattern with `*` or `?` is a glob.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = ModelAllowlist::default();
        for p in patterns {
            let p = p.as_ref();
            if p.contains(['*', '?']) {
                list.globs.push(p.into());
            } else {
                list.exact.push(p.into());
            }
        }
        list
    }

    /// True when no pattern was given: every model is allowed.
    pub fn allows_all(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    /// Whether `model` is allowed.
    pub fn allows(&self, model: &str) -> bool {
        self.allows_all()
            || self.exact.iter().any(|e| &**e == model)
            || self.globs.iter().any(|g| glob_match(g.as_bytes(), model.as_bytes()))
    }

    /// The patterns, exact names first.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().chain(self.globs.iter()).map(|s| &**s)
    }
}

/// Iterative glob match with backtracking on the last `*`: linear in practice, never
/// exponential, whatever the pattern.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(patterns: &[&str], model: &str, allowed: bool) {
        assert_eq!(ModelAllowlist::new(patterns).allows(model), allowed, "{patterns:?} vs {model}");
    }

    #[test]
    fn exact_names_and_globs() {
        check(&[], "anything", true);
        check(&["gpt-4o"], "gpt-4o", true);
        check(&["gpt-4o"], "gpt-4o-mini", false);
        check(&["gpt-4o*"], "gpt-4o-mini", true);
        check(&["gpt-4o*"], "gpt-4", false);
        check(&["claude-*-sonnet"], "claude-3-5-sonnet", true);
        check(&["claude-*-sonnet"], "claude-3-5-haiku", false);
        check(&["gpt-?o"], "gpt-4o", true);
        check(&["*"], "x", true);
        check(&["a*b*c"], "aXXbYYc", true);
        check(&["a*b*c"], "aXXbYY", false);
    }

    #[test]
    fn pathological_globs_finish_quickly() {
        let text = "a".repeat(10_000);
        check(&["*a*a*a*a*a*a*a*a*b"], &text, false);
    }
}
