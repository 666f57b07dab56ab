//! The command tree itself: help on every command and argument, and the README's commands.

use super::Cli;
use clap::CommandFactory;

/// Every subcommand and every argument says what it is for in `--help`.
#[test]
fn every_command_and_argument_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let here = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(format!("{here} (the command itself)"));
            }
            walk(sub, &here, missing);
        }
    }
    Cli::command().debug_assert();
    let mut missing = Vec::new();
    walk(&Cli::command(), "jitgate", &mut missing);
    assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
}

#[test]
fn serve_help_leaves_out_the_client_flags_that_other_verbs_keep() {
    let help = |path: &[&str]| {
        let args = ["jitgate"].iter().chain(path).chain(&["--help"]).copied();
        let e = Cli::command().try_get_matches_from(args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        e.to_string()
    };
    let serve = help(&["serve"]);
    assert!(serve.contains("--config"), "{serve}");
    assert!(!serve.contains("--server") && !serve.contains("--json"), "{serve}");
    let requests = help(&["requests"]);
    assert!(requests.contains("--server") && requests.contains("--json"), "{requests}");
    // Hidden is not removed: a stray `--json` after `serve` still parses as before.
    assert!(Cli::command().try_get_matches_from(["jitgate", "serve", "--json"]).is_ok());
}

/// Every `jitgate ...` command in the README's shell blocks is one the CLI accepts, so the
/// README cannot drift from the flags and verbs that exist.
#[test]
fn every_command_in_the_readme_parses() {
    let readme = include_str!("../../../../README.md");
    let commands = readme_commands(readme);
    assert!(commands.len() > 40, "found only {} commands in the README", commands.len());
    let mut bad = Vec::new();
    for words in &commands {
        if let Err(e) = Cli::command().try_get_matches_from(words) {
            use clap::error::ErrorKind;
            if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                bad.push(format!("{}\n    {}", words.join(" "), e.to_string().lines().next().unwrap_or("")));
            }
        }
    }
    assert!(bad.is_empty(), "README commands the CLI refuses:\n{}", bad.join("\n"));
}

/// The `jitgate` invocations in the README's ```sh blocks, as words: continuations joined,
/// `$(...)` replaced by a placeholder (and its own `jitgate` calls taken too), comments cut,
/// pipelines and `;`/`&&` lists split, leading `VAR=value` words dropped.
fn readme_commands(readme: &str) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    let mut out = Vec::new();
    for line in lines {
        let mut pieces = vec![line];
        while let Some(piece) = pieces.pop() {
            let (outer, inner) = take_substitutions(&piece);
            pieces.extend(inner);
            for segment in split_commands(&outer) {
                let Some(mut words) = shlex::split(&segment) else {
                    panic!("cannot split README line: {segment}")
                };
                while words.first().is_some_and(|w| w.contains('=') && !w.starts_with('-')) {
                    words.remove(0);
                }
                if words.first().is_some_and(|w| w == "jitgate") {
                    out.push(words);
                }
            }
        }
    }
    out
}

/// `a $(b) c` -> (`a X c`, [`b`]), for nested parentheses too.
fn take_substitutions(s: &str) -> (String, Vec<String>) {
    let (mut outer, mut inner) = (String::new(), Vec::new());
    let mut rest = s;
    while let Some(at) = rest.find("$(") {
        outer.push_str(&rest[..at]);
        let body = &rest[at + 2..];
        let mut depth = 1;
        let end = body
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(body.len(), |(i, _)| i);
        inner.push(body[..end].to_owned());
        outer.push('X');
        rest = body.get(end + 1..).unwrap_or("");
    }
    outer.push_str(rest);
    (outer, inner)
}

/// Splits at `|`, `;` and `&&` outside quotes and drops a `#` comment.
fn split_commands(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote) = (Vec::new(), String::new(), None::<char>);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, '#') if cur.is_empty() || cur.ends_with(char::is_whitespace) => break,
            (None, '|' | ';') => out.push(std::mem::take(&mut cur)),
            (None, '&') if chars.peek() == Some(&'&') => {
                chars.next();
                out.push(std::mem::take(&mut cur));
            }
            (None, c) => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}
