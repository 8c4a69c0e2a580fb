//! The installation is complete by construction, not by luck: every GStreamer element a
//! template or the code names, and every program the scripts and tests run, must come from
//! a Debian package that `scripts/setup` installs (and, for what the daemon needs, one the
//! `.deb` depends on). A machine with earlier hand installs passes a suite that a fresh one
//! fails; these tests ask `dpkg` who owns each file instead of trusting that it is there.
//! (`./scripts/test --fresh` is the full proof on a clean Debian 12 root.)

use crate::common::repo;
use courtbox::capture::elements::{self, ELEMENTS, Need};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's own directories: a program found only elsewhere (pyenv, /usr/local, ~/.cargo)
/// was installed by hand and will not be on a fresh machine.
const DEBIAN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs that are prerequisites of the README (Rust) or that the project builds itself,
/// and `sudo`, which the scripts and tests use only when not run as root (then the machine
/// has it: it is how a user became able to install anything).
const NOT_FROM_DEBIAN: &[&str] = &["cargo", "rustc", "rustup", "courtbox", "sudo"];

/// Every package named in `scripts/setup`'s `packages=(…)` and `test_packages=(…)` lists.
fn setup_packages() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("scripts/setup")).unwrap();
    let mut out = BTreeSet::new();
    let mut in_list = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = line;
        // `packages=(` opens a list; `test_packages+=(npm)` may stand after an `if …; then`.
        for start in ["packages=(", "test_packages=(", "test_packages+=("] {
            if line.starts_with(start) || line.contains(&format!(" {start}")) {
                in_list = true;
                rest = &line[line.find(start).unwrap() + start.len()..];
            }
        }
        if !in_list {
            continue;
        }
        let (words, closed) = match rest.split_once(')') {
            Some((words, _)) => (words, true),
            None => (rest, false),
        };
        out.extend(words.split_whitespace().filter(|w| !w.starts_with('"') && !w.starts_with('$')).map(String::from));
        in_list = !closed;
    }
    assert!(
        out.contains("gstreamer1.0-plugins-base") && out.contains("ffmpeg") && out.contains("npm"),
        "setup's lists not found: {out:?}"
    );
    out
}

/// The `.deb`'s `depends` in Cargo.toml.
fn deb_depends() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("depends = ")).expect("Cargo.toml has a deb depends line");
    line.trim_start_matches("depends = ")
        .trim_matches('"')
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.starts_with('$'))
        .collect()
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).env("PATH", DEBIAN_PATH).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian package that owns `path` (also under its merged-/usr name).
fn owner(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut candidates = vec![path.to_path_buf(), real.clone()];
    for p in [path, real.as_path()] {
        let s = p.to_string_lossy();
        if let Some(rest) = s.strip_prefix("/usr") {
            candidates.push(PathBuf::from(rest));
        } else {
            candidates.push(PathBuf::from(format!("/usr{s}")));
        }
    }
    candidates.iter().find_map(|c| {
        let out = run("dpkg", &["-S", c.to_str()?])?;
        let line = out.lines().find(|l| !l.starts_with("diversion"))?;
        Some(line.split(':').next()?.trim().to_string())
    })
}

/// Packages every Debian system has: essential, or of priority required or important
/// (a minimal root has these; the priority a package's own control file gives, which dpkg
/// records, can be `important` where the archive says `required`, as for apt).
fn always_present(package: &str) -> bool {
    run("dpkg-query", &["-W", "-f=${Priority} ${Essential}", package])
        .is_some_and(|s| s.starts_with("required") || s.starts_with("important") || s.ends_with("yes"))
}

/// The direct dependencies of an installed package.
fn depends_of(package: &str) -> Vec<String> {
    run("dpkg-query", &["-W", "-f=${Depends}, ${Pre-Depends}", package])
        .unwrap_or_default()
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d).to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Whether installing `listed` brings `package`: it is listed, or a listed package depends
/// on it directly, or every Debian system has it.
fn brought_by(package: &str, listed: &BTreeSet<String>) -> bool {
    listed.contains(package)
        || always_present(package)
        || listed.iter().any(|l| depends_of(l).iter().any(|d| d == package))
}

/// The plugin file that provides an element, from `gst-inspect-1.0`.
fn plugin_file(element: &str) -> Option<PathBuf> {
    let out = run("gst-inspect-1.0", &[element])?;
    let line = out.lines().find(|l| l.trim_start().starts_with("Filename"))?;
    Some(PathBuf::from(line.split_whitespace().nth(1)?))
}

#[test]
fn every_element_comes_from_a_package_that_setup_installs_and_the_deb_depends_on() {
    let setup = setup_packages();
    let deb = deb_depends();
    let mut faults = Vec::new();
    for e in ELEMENTS {
        let Some(file) = plugin_file(e.name) else {
            faults.push(format!("{}: not installed here (gst-inspect-1.0 finds no plugin for it)", e.name));
            continue;
        };
        let Some(package) = owner(&file) else {
            faults.push(format!("{}: {} belongs to no Debian package (installed by hand?)", e.name, file.display()));
            continue;
        };
        if package != e.package {
            faults.push(format!("{}: comes from {package}, the list in capture::elements says {}", e.name, e.package));
        }
        if !brought_by(&package, &setup) {
            faults.push(format!("{}: its package {package} is not installed by scripts/setup", e.name));
        }
        if e.need != Need::Bench && !brought_by(&package, &deb) {
            faults.push(format!("{}: its package {package} is not among the .deb's depends (Cargo.toml)", e.name));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The contents of every string literal in a Rust source (plain, raw and byte strings).
fn string_literals(source: &str) -> Vec<String> {
    let b = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // A char literal '"' (or '\'') is not the start of a string.
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => i += 4,
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = source[open + 1..].find(&close).map_or(b.len(), |e| open + 1 + e);
                out.push(source[open + 1..end].to_string());
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                out.push(source[i + 1..j.min(b.len())].to_string());
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// A string that is (part of) a launch description: it links elements, or it starts with
/// an element and sets a property.
fn looks_like_a_pipeline(text: &str) -> bool {
    let first = text.split_whitespace().next().unwrap_or("");
    text.contains(" ! ") || (text.contains('=') && gst::ElementFactory::find(first).is_some())
}

#[test]
fn every_element_a_template_or_the_code_names_is_in_the_list() {
    gst::init().unwrap();
    let mut named: BTreeSet<(String, String)> = BTreeSet::new();
    let mut templates = Vec::new();
    files_under(&repo().join("pipelines"), "gst", &mut templates);
    assert!(templates.len() >= 10, "templates: {templates:?}");
    for t in &templates {
        let text: String = std::fs::read_to_string(t)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        for f in elements::factories_in(&text) {
            named.insert((f, t.display().to_string()));
        }
    }
    let mut sources = Vec::new();
    files_under(&repo().join("src"), "rs", &mut sources);
    files_under(&repo().join("tests/integration"), "rs", &mut sources);
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        let made = text.split("ElementFactory::make(\"").skip(1).filter_map(|r| r.split('"').next());
        for f in made {
            named.insert((f.to_string(), file.display().to_string()));
        }
        for literal in string_literals(&text).iter().filter(|l| looks_like_a_pipeline(l)) {
            for f in elements::factories_in(literal) {
                named.insert((f, file.display().to_string()));
            }
        }
    }
    // Only words that really are elements on this machine count (the package test above
    // proves every listed one is installed); an element named but not installed here fails
    // as not listed only if it is missing from the list too.
    let unlisted: Vec<String> = named
        .iter()
        .filter(|(f, _)| gst::ElementFactory::find(f).is_some() && elements::package_of(f).is_none())
        .map(|(f, file)| format!("{f} (named in {file})"))
        .collect();
    assert!(unlisted.is_empty(), "elements missing from capture::elements::ELEMENTS:\n{}", unlisted.join("\n"));
    let found: BTreeSet<&str> = named.iter().map(|(f, _)| f.as_str()).collect();
    for must in ["textoverlay", "clockoverlay", "splitmuxsink", "x264enc", "rtmp2sink", "avdec_h264"] {
        assert!(found.contains(must), "the scan missed {must}: it would miss others too ({found:?})");
    }
}

/// The word in command position of each simple command of a shell script: after a line
/// start, `;`, `&&`, `||`, `|`, `(` or `$(`, past variable assignments and `sudo`/`exec`/
/// `if`/`then`/`!`…; not functions the script defines, heredoc bodies or array lists.
fn shell_commands(script: &str) -> BTreeSet<String> {
    const LEADING: &[&str] =
        &["if", "then", "else", "elif", "do", "while", "until", "!", "exec", "sudo", "$SUDO", "time", "nice"];
    const BUILTINS: &[&str] = &[
        "fi", "done", "esac", "for", "case", "in", "function", "return", "exit", "local", "export", "set", "shift",
        "echo", "printf", "read", "cd", "test", "[", "[[", "true", "false", "trap", "wait", "eval", "source", ".",
        "command", "type", "declare", "mapfile", "readonly", "unset", "break", "continue", "kill", "}", "{",
    ];
    let functions: BTreeSet<&str> =
        script.lines().filter_map(|l| l.trim().split_once("() {").map(|(name, _)| name.trim())).collect();
    let mut out = BTreeSet::new();
    let mut heredoc: Option<String> = None;
    let mut in_array = false;
    for line in script.lines() {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let code = line.trim();
        if code.starts_with('#') {
            continue;
        }
        if in_array {
            in_array = !code.contains(')');
            continue;
        }
        if let Some((_, tag)) = code.split_once("<<") {
            let tag = tag.trim_start_matches('-').trim().trim_matches(['\'', '"']);
            heredoc = tag.split_whitespace().next().map(String::from);
        }
        if code.contains("=(") && !code.contains(')') {
            in_array = true;
        }
        // Quoted text holds no commands, except inside $( ) (kept as is).
        let mut plain = String::new();
        let mut quote: Option<char> = None;
        // Open `$(` inside double quotes: their text is code.
        let mut substitutions = 0;
        let mut chars = code.chars().peekable();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some('"'), '$') if chars.peek() == Some(&'(') => {
                    substitutions += 1;
                    plain.push_str("$(");
                    chars.next();
                }
                (Some('"'), ')') if substitutions > 0 => {
                    substitutions -= 1;
                    plain.push(')');
                }
                (Some('"'), c) if substitutions > 0 => plain.push(c),
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => plain.push('Q'),
                (None, '#') if plain.ends_with(' ') => break,
                (None, c) => plain.push(c),
            }
        }
        // An array on one line (`names=(base)`) lists words, not commands.
        while let Some(open) = plain.find("=(") {
            let close = plain[open..].find(')').map_or(plain.len(), |c| open + c + 1);
            plain.replace_range(open..close, "=");
        }
        for segment in plain.split(['&', '|', ';', '(', ')', '`']) {
            let mut words = segment.split_whitespace().skip_while(|w| {
                LEADING.contains(w)
                    || w.split_once('=')
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '+'))
            });
            let Some(word) = words.next() else { continue };
            let is_name = word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && word.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
            if is_name && !BUILTINS.contains(&word) && !functions.contains(word) {
                out.insert(word.to_string());
            }
        }
    }
    out
}

#[test]
fn every_program_the_scripts_and_tests_run_comes_from_a_package_that_setup_installs() {
    let setup = setup_packages();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        // `scripts/fresh` runs on the host that builds the clean root, and installs its own
        // tool (mmdebstrap); everything else runs inside that root.
        if path.file_name().is_some_and(|n| n == "fresh") {
            continue;
        }
        for c in shell_commands(&std::fs::read_to_string(&path).unwrap()) {
            used.insert((c, path.display().to_string()));
        }
    }
    for file in ["models/fetch", ".ci/run"] {
        for c in shell_commands(&std::fs::read_to_string(repo().join(file)).unwrap()) {
            used.insert((c, file.to_string()));
        }
    }
    let mut sources = Vec::new();
    files_under(&repo().join("src"), "rs", &mut sources);
    files_under(&repo().join("tests/integration"), "rs", &mut sources);
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        for marker in ["Command::new(\"", "privileged(\""] {
            for c in text.split(marker).skip(1).filter_map(|r| r.split('"').next()) {
                used.insert((c.to_string(), file.display().to_string()));
            }
        }
    }
    // The browser the panel test drives by path.
    used.insert(("chromium".into(), "tests/panel/drive.mjs".into()));
    for must in ["ffprobe", "nginx", "srt-live-transmit", "espeak-ng", "text2wave", "npm", "python3"] {
        assert!(used.iter().any(|(c, _)| c == must), "the scan missed {must}: {used:?}");
    }

    let mut faults = Vec::new();
    for (program, file) in &used {
        if NOT_FROM_DEBIAN.contains(&program.as_str()) {
            continue;
        }
        let Some(path) = run("sh", &["-c", &format!("command -v {program}")]).map(|p| PathBuf::from(p.trim())) else {
            faults.push(format!("{program} (run by {file}): not found in {DEBIAN_PATH}"));
            continue;
        };
        match owner(&path) {
            None => faults.push(format!("{program} (run by {file}): {} belongs to no Debian package", path.display())),
            Some(package) if !brought_by(&package, &setup) => faults
                .push(format!("{program} (run by {file}): its package {package} is not installed by scripts/setup")),
            Some(_) => {}
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_shell_scan_finds_commands_and_skips_the_rest() {
    let script = "#!/bin/bash\nsay() { # f\n  espeak-ng -v x \"$1\"\n}\nx=(\n  libfoo-dev\n)\ncat > f <<TOML\ncourt = \"x\"\nTOML\n\
                  if ! command -v npm >/dev/null; then a+=(tar); fi\n(cd d && npm pack x) | sha256sum\n\
                  text2wave -eval \"(voice_x)\" f\nsay a b\nmapfile -t w < <(\"$cb\" model)\nout=$(ffprobe -v 0 f)\n";
    let found = shell_commands(script);
    let expected: BTreeSet<String> =
        ["espeak-ng", "cat", "npm", "sha256sum", "text2wave", "ffprobe"].into_iter().map(String::from).collect();
    assert_eq!(found, expected);
}
