//! The README against the binaries and the tree: every `podswitchd`,
//! `podswitchctl` and `podswitch` command it shows (code blocks, the command
//! summary, inline code) exists — each distinct (binary, subcommand path) is
//! run with `--help` and must succeed, and every flag shown for it must be
//! one of its options — the CNI plugin answers `CNI_COMMAND=VERSION`, every
//! repository path it names exists (and every `file.md#anchor` heading),
//! the quick start is the two commands `.ci/run` keeps running, and the
//! packages `.ci/run` installs are listed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use podswitch_tests::{live, workspace};

/// A binary the README may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bin {
    Daemon,
    Ctl,
    Cni,
}

impl Bin {
    fn from_token(token: &str) -> Option<Bin> {
        // `ExecStart=/usr/local/bin/podswitchd`, `target/release/podswitchctl`, ...
        let token = token.rsplit('=').next().unwrap_or(token);
        match token.rsplit('/').next().unwrap_or(token) {
            "podswitchd" => Some(Bin::Daemon),
            "podswitchctl" => Some(Bin::Ctl),
            "podswitch" => Some(Bin::Cni),
            _ => None,
        }
    }

    /// The binary under test (`PODSWITCHD_BIN` and its siblings, see `live`).
    fn path(self) -> PathBuf {
        match self {
            Bin::Daemon => live::daemon_bin(),
            Bin::Ctl => live::ctl_bin(),
            Bin::Cni => live::cni_bin(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bin::Daemon => "podswitchd",
            Bin::Ctl => "podswitchctl",
            Bin::Cni => "podswitch",
        }
    }
}

/// One command as the README shows it: the binary, its words after the
/// binary, and the README text it came from.
#[derive(Debug, Clone)]
struct Shown {
    bin: Bin,
    words: Vec<String>,
    source: String,
}

/// What the README's markdown holds, split for the checks.
#[derive(Debug, Default)]
struct Readme {
    /// Logical lines of code blocks (indented lines and `\` joined), by block.
    blocks: Vec<Vec<String>>,
    /// Inline code spans outside code blocks.
    spans: Vec<String>,
    /// Relative link targets, `](target)`.
    links: Vec<String>,
    /// Headings (`## Quick start`), in order.
    headings: Vec<String>,
}

fn parse_markdown(text: &str) -> Readme {
    let mut readme = Readme::default();
    let mut block: Option<Vec<String>> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match block.take() {
                Some(b) => readme.blocks.push(b),
                None => block = Some(Vec::new()),
            }
            continue;
        }
        if let Some(b) = block.as_mut() {
            let continues = b.last().is_some_and(|l: &String| l.ends_with('\\'))
                || (line.starts_with(char::is_whitespace) && !line.trim().is_empty());
            match b.last_mut() {
                Some(last) if continues => {
                    let last_trimmed = last.trim_end_matches('\\').trim_end().to_string();
                    *last = format!("{last_trimmed} {}", line.trim());
                }
                _ => b.push(line.to_string()),
            }
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            readme
                .headings
                .push(h.trim_start_matches('#').trim().to_string());
        }
        readme.spans.extend(between(line, "`", '`'));
        readme.links.extend(between(line, "](", ')'));
    }
    assert!(block.is_none(), "README.md: a code block is not closed");
    readme
}

/// The texts between each `open` and the next `close` in `line`.
fn between(line: &str, open: &str, close: char) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(close) else { break };
        found.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    found
}

/// `line` without a shell comment (` # ...`, or a line that is one).
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The shell segments of a line: split at ` | `, `&&` and `;`.
fn segments(line: &str) -> Vec<String> {
    strip_comment(line)
        .split(" | ")
        .flat_map(|s| s.split("&&"))
        .flat_map(|s| s.split(';'))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn is_word(token: &str) -> bool {
    let mut chars = token.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `--help` output and subcommands of each (binary, subcommand path), run once.
#[derive(Default)]
struct Helps {
    cache: BTreeMap<(Bin, Vec<String>), Result<String, String>>,
}

impl Helps {
    fn help(&mut self, bin: Bin, path: &[String]) -> Result<String, String> {
        let key = (bin, path.to_vec());
        if let Some(cached) = self.cache.get(&key) {
            return cached.clone();
        }
        let result = if bin == Bin::Cni {
            cni_version()
        } else {
            let out = Command::new(bin.path())
                .args(path)
                .arg("--help")
                .stdin(Stdio::null())
                .output()
                .expect("run the binary");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                Ok(text)
            } else {
                Err(format!(
                    "`{} {} --help` failed ({}): {}",
                    bin.name(),
                    path.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        self.cache.insert(key, result.clone());
        result
    }

    /// The subcommands (names and aliases) listed under `Commands:`.
    fn subcommands(&mut self, bin: Bin, path: &[String]) -> Result<BTreeSet<String>, String> {
        let help = self.help(bin, path)?;
        let mut names = BTreeSet::new();
        let mut inside = false;
        for line in help.lines() {
            if line.starts_with("Commands:") {
                inside = true;
                continue;
            }
            if !inside {
                continue;
            }
            if !line.starts_with("  ") || line.trim().is_empty() {
                break;
            }
            if let Some(name) = line.split_whitespace().next() {
                names.insert(name.to_string());
            }
            if let Some(start) = line.find("[alias") {
                let list = &line[start..];
                let list = list[list.find(':').map_or(0, |i| i + 1)..].trim_end_matches(']');
                names.extend(list.split(',').map(|a| a.trim().to_string()));
            }
        }
        Ok(names)
    }

    /// The option names (`--kind`, `-c`) of a command's help.
    fn options(&mut self, bin: Bin, path: &[String]) -> Result<BTreeSet<String>, String> {
        let help = self.help(bin, path)?;
        let mut options = BTreeSet::new();
        for line in help.lines() {
            let line = line.trim_start();
            let line = line.strip_prefix("[alias:").unwrap_or(line).trim_start();
            if !line.starts_with('-') || line.starts_with("- ") {
                continue;
            }
            for token in line.split([' ', ',', ']', '=']) {
                if token.starts_with('-') && token.len() > 1 && token != "--" {
                    options.insert(token.to_string());
                }
            }
        }
        Ok(options)
    }
}

/// `podswitch` has no `--help`: it speaks CNI through `CNI_*` variables.
fn cni_version() -> Result<String, String> {
    let out = Command::new(Bin::Cni.path())
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .expect("run the CNI plugin");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && text.contains("supportedVersions") {
        Ok(text)
    } else {
        Err(format!("`CNI_COMMAND=VERSION podswitch` failed: {text}"))
    }
}

/// The flags shown in a command's words: `--kind`, `-c`, from `[--a|--b]` too.
fn flags_shown(words: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    for word in words {
        for part in word.split('|') {
            let part = part.trim_start_matches(['[', '(']);
            let part = part.split('=').next().unwrap_or(part);
            let part = part.trim_end_matches([']', ')', '.', ',', '`']);
            let long = part.strip_prefix("--").is_some_and(is_word);
            let short = part.len() == 2
                && part.starts_with('-')
                && part.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic());
            if long || short {
                flags.push(part.to_string());
            }
        }
    }
    flags
}

/// Programs a README command may pipe into (`capture -w - | tcpdump -r -`);
/// any other word after ` | ` must be an alternative subcommand.
const PIPED_INTO: [&str; 6] = ["tcpdump", "tshark", "jq", "less", "grep", "head"];

/// The commands in one line (of a code block, or an inline span). A
/// segment after ` | ` whose first word is a sibling subcommand of the
/// previous command (`port list | show NAME`) is that command.
fn commands_in(line: &str, helps: &mut Helps) -> Result<Vec<(Shown, Vec<String>)>, String> {
    let mut found: Vec<(Shown, Vec<String>)> = Vec::new();
    for segment in segments(line) {
        let tokens: Vec<String> = segment.split_whitespace().map(str::to_string).collect();
        let start = tokens.iter().position(|t| Bin::from_token(t).is_some());
        let (bin, prefix, words) = match (start, found.last()) {
            (Some(i), _) => {
                let bin = Bin::from_token(&tokens[i]).unwrap_or(Bin::Ctl);
                (bin, Vec::new(), tokens[i + 1..].to_vec())
            }
            (None, Some((prev, path))) if !path.is_empty() => {
                let parent = path[..path.len() - 1].to_vec();
                let siblings = helps.subcommands(prev.bin, &parent)?;
                let first = tokens.first().map_or("", String::as_str);
                if !siblings.contains(first) {
                    if PIPED_INTO.contains(&first) || !is_word(first) {
                        continue;
                    }
                    return Err(format!(
                        "{first:?} after `{} {} |` is neither a subcommand of `{} {}` nor a \
                         program the README pipes into ({PIPED_INTO:?}), in {line:?}",
                        prev.bin.name(),
                        path.join(" "),
                        prev.bin.name(),
                        parent.join(" ")
                    ));
                }
                (prev.bin, parent, tokens)
            }
            _ => continue,
        };
        let path = resolve(bin, prefix, &words, helps).map_err(|e| format!("{e} in {line:?}"))?;
        let shown = Shown {
            bin,
            words,
            source: line.to_string(),
        };
        found.push((shown, path));
    }
    Ok(found)
}

/// The subcommand path the words name: bare words that are subcommands of
/// the command so far; a bare word that is not one is an error.
fn resolve(
    bin: Bin,
    mut path: Vec<String>,
    words: &[String],
    helps: &mut Helps,
) -> Result<Vec<String>, String> {
    if bin == Bin::Cni {
        return Ok(path);
    }
    for word in words {
        let subcommands = helps.subcommands(bin, &path)?;
        if subcommands.is_empty() || !is_word(word) {
            break;
        }
        if !subcommands.contains(word) {
            return Err(format!(
                "`{} {}` has no subcommand {word:?} (it has {subcommands:?})",
                bin.name(),
                path.join(" ")
            ));
        }
        path.push(word.clone());
    }
    Ok(path)
}

/// Every command of the README, checked: `--help` succeeds and every flag
/// shown is an option. Returns the distinct (binary, path) checked.
fn check_commands(readme: &Readme, helps: &mut Helps) -> Result<BTreeSet<String>, String> {
    let lines = readme
        .blocks
        .iter()
        .flatten()
        .chain(readme.spans.iter())
        .cloned()
        .collect::<Vec<_>>();
    let mut checked = BTreeSet::new();
    for line in &lines {
        for (shown, path) in commands_in(line, helps)? {
            helps.help(shown.bin, &path)?;
            let options = helps.options(shown.bin, &path)?;
            for flag in flags_shown(&shown.words) {
                if shown.bin != Bin::Cni && !options.contains(&flag) {
                    return Err(format!(
                        "README shows {flag} for `{} {}`, which has no such option ({:?})",
                        shown.bin.name(),
                        path.join(" "),
                        shown.source
                    ));
                }
            }
            checked.insert(format!("{} {}", shown.bin.name(), path.join(" ")));
        }
    }
    Ok(checked)
}

fn readme_text() -> String {
    std::fs::read_to_string(workspace().join("README.md")).expect("README.md")
}

#[test]
fn every_command_and_flag_in_the_readme_exists() {
    let readme = parse_markdown(&readme_text());
    let mut helps = Helps::default();
    let checked = check_commands(&readme, &mut helps).unwrap_or_else(|e| panic!("{e}"));
    // The README shows the whole CLI: make sure the parser saw it.
    for expected in [
        "podswitchd demo",
        "podswitchd run",
        "podswitchd replay",
        "podswitchctl status",
        "podswitchctl service add",
        "podswitchctl endpoint set",
        "podswitchctl node add",
        "podswitchctl mirror add",
        "podswitchctl capture",
        "podswitchctl conntrack list",
        "podswitchctl conntrack flush",
        "podswitch ",
    ] {
        assert!(
            checked.contains(expected),
            "the README's commands as parsed lack `{expected}`: {checked:?}"
        );
    }
    // Every podswitchctl command is shown somewhere.
    let top = helps.subcommands(Bin::Ctl, &[]).unwrap();
    for command in top.iter().filter(|c| *c != "help") {
        let is_alias = !helps
            .help(Bin::Ctl, &[])
            .unwrap()
            .contains(&format!("  {command} "));
        if !is_alias {
            assert!(
                checked
                    .iter()
                    .any(|c| c.starts_with(&format!("podswitchctl {command}"))),
                "the README's command summary lacks `podswitchctl {command}`"
            );
        }
    }
}

#[test]
fn the_checker_refuses_unknown_commands_and_flags() {
    let mut helps = Helps::default();
    let readme = |text: &str| parse_markdown(&format!("```\n{text}\n```\n"));
    let bad = [
        "podswitchctl no-such-command",
        "podswitchctl port lst",
        "podswitchctl port list | shw NAME",
        "podswitchctl status --no-such-flag",
        "podswitchctl capture -z 1",
        "podswitchd run --no-such-flag",
        "podswitchd no-such-command",
        "x && podswitchctl conntrack list --sprt 80",
    ];
    for text in bad {
        assert!(
            check_commands(&readme(text), &mut helps).is_err(),
            "accepted: {text}"
        );
    }
    let good = "podswitchctl port list | show NAME | del NAME\npodswitchctl capture -c 5 -w - | tcpdump -r -";
    let checked = check_commands(&readme(good), &mut helps).unwrap();
    assert!(
        checked.contains("podswitchctl port show") && checked.contains("podswitchctl port del")
    );
    assert!(!checked.iter().any(|c| c.contains("tcpdump")));
}

/// Repository paths in code and links: `deploy/podswitchd.service`, `docs/config.md#cni-conflist`.
fn paths_named(readme: &Readme) -> Vec<String> {
    let root = workspace();
    let top: BTreeSet<String> = std::fs::read_dir(&root)
        .expect("workspace")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "target" && n != ".git")
        .collect();
    let words = readme
        .blocks
        .iter()
        .flatten()
        .chain(readme.spans.iter())
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .chain(readme.links.iter().cloned());
    let mut paths = Vec::new();
    for word in words {
        let word = word.rsplit('=').next().unwrap_or(&word);
        let word = word.trim_matches(|c: char| "`'\"()[],;:".contains(c));
        let word = word.trim_end_matches('.');
        if word.contains(['<', '>', '*', '{', '}', '…', '$']) || word.contains("://") {
            continue;
        }
        let Some((first, _)) = word.split_once('/') else {
            continue;
        };
        if top.contains(first) {
            paths.push(word.to_string());
        }
    }
    paths
}

/// The anchor GitHub gives a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_path_the_readme_names_exists() {
    let readme = parse_markdown(&readme_text());
    let paths = paths_named(&readme);
    for expected in [
        "deploy/podswitchd.service",
        "deploy/podswitch-daemonset.yaml",
        "deploy/install-cni.sh",
        "docs/config.md",
        "docs/api.md",
        "benches/README.md",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "the README should name {expected} (found {paths:?})"
        );
    }
    for path in &paths {
        let (file, fragment) = path.split_once('#').unwrap_or((path, ""));
        let full = workspace().join(file);
        assert!(
            full.exists(),
            "README.md names {path}, which does not exist"
        );
        if !fragment.is_empty() {
            let text = std::fs::read_to_string(&full).expect("linked file");
            let anchors: Vec<String> = parse_markdown(&text)
                .headings
                .iter()
                .map(|h| anchor(h))
                .collect();
            assert!(
                anchors.iter().any(|a| a == fragment),
                "README.md links {path}: no such heading (anchors: {anchors:?})"
            );
        }
    }
}

#[test]
fn quick_start_is_two_commands_and_ci_runs_the_test_command() {
    let text = readme_text();
    let readme = parse_markdown(&text);
    let start = text.find("## Quick start").expect("a Quick start section");
    let blocks_before = parse_markdown(&text[..start]).blocks.len();
    let block = &readme.blocks[blocks_before];
    let commands: Vec<String> = block
        .iter()
        .map(|l| strip_comment(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo build --release --workspace && target/release/podswitchd demo",
            "cargo test --workspace"
        ],
        "the quick start is exactly the demo and the tests"
    );
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run must run the README's test command `{}`",
        commands[1]
    );
    // The Debian packages .ci/run installs are the ones the README lists.
    let install = ci
        .lines()
        .find(|l| l.contains("apt-get install"))
        .expect(".ci/run installs packages");
    let packages: Vec<&str> = install
        .split("apt-get install")
        .nth(1)
        .unwrap_or("")
        .split('>')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter(|p| !p.starts_with('-'))
        .collect();
    assert!(packages.len() >= 5, "packages of .ci/run: {packages:?}");
    let quick_start = &text[start..];
    let quick_start = &quick_start[..quick_start[3..]
        .find("\n## ")
        .map_or(quick_start.len(), |i| i + 3)];
    for package in packages {
        assert!(
            quick_start.contains(package),
            "the quick start does not list the Debian package {package} that .ci/run installs"
        );
    }
}
