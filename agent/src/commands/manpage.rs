//! The man page and shell completions, generated from the clap command so
//! they cannot disagree with `--help`.
//!
//! clap_mangen renders the title, name, synopsis, description and options;
//! the commands (with their long help and arguments) and the sections clap
//! has no field for (configuration, environment, exit status, files,
//! examples) are rendered here, the latter from [`AFTER_LONG_HELP`] (in [`super::args`]), which
//! `tailrace --help` shows too. The packaged copies under `packaging/` are
//! checked against this output by `agent/tests/it/generated_files.rs`.

use std::fmt::Write as _;

use super::args::{command, AFTER_LONG_HELP};

/// Escape one line of text for roff.
fn roff(line: &str) -> String {
    let mut s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

/// The man page, tailrace(1), in roff.
pub fn man_page() -> String {
    let cmd = command();
    let man = clap_mangen::Man::new(cmd.clone())
        .title("TAILRACE")
        .manual("User Commands");
    let mut head = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut head);
    let _ = man.render_name_section(&mut head);
    let _ = man.render_synopsis_section(&mut head);
    let _ = man.render_description_section(&mut head);
    let _ = man.render_options_section(&mut head);
    let mut out = String::from_utf8_lossy(&head).into_owned();

    out.push_str(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone().bin_name(format!("tailrace {}", sub.get_name()));
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        let _ = writeln!(out, ".TP\n\\fB{}\\fR", roff(usage));
        let text = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|t| t.to_string())
            .unwrap_or_default();
        for (i, para) in text.split("\n\n").enumerate() {
            if i > 0 {
                out.push_str(".IP\n");
            }
            let _ = writeln!(out, "{}", roff(&para.replace('\n', " ")));
        }
        let args: Vec<_> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
            .collect();
        if !args.is_empty() {
            out.push_str(".RS\n");
            for a in args {
                let mut term = String::new();
                if let Some(s) = a.get_short() {
                    let _ = write!(term, "-{s}, ");
                }
                match a.get_long() {
                    Some(l) => {
                        let _ = write!(term, "--{l}");
                        if a.get_action().takes_values() {
                            let _ = write!(term, " {}", a.get_id().as_str().to_uppercase());
                        }
                    }
                    None => term.push_str(&a.get_id().as_str().to_uppercase()),
                }
                let mut help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.is_empty() && !help.ends_with('.') {
                    help.push('.');
                }
                let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(&term), roff(&help));
                let defaults: Vec<_> = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                if !defaults.is_empty() && a.get_action().takes_values() {
                    let _ = writeln!(out, "Default: {}.", roff(&defaults.join(" ")));
                }
            }
            out.push_str(".RE\n");
        }
    }
    out.push_str(&sections(AFTER_LONG_HELP));
    out
}

/// Render [`AFTER_LONG_HELP`]'s layout as roff sections.
fn sections(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut verbatim = false;
    let mut after_blank = false;
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        if verbatim && indent != 4 {
            out.push_str(".fi\n");
            verbatim = false;
        }
        if line.trim().is_empty() {
            after_blank = true;
            continue;
        }
        if indent == 0 {
            let _ = writeln!(out, ".SH {}", line.trim());
        } else if indent == 4 {
            if !verbatim {
                out.push_str(".nf\n");
                verbatim = true;
            }
            let _ = writeln!(out, "{}", roff(line.trim()));
        } else if indent >= 6 {
            let _ = writeln!(out, "{}", roff(line.trim()));
        } else if lines
            .get(i + 1)
            .is_some_and(|next| next.starts_with("      "))
        {
            let _ = writeln!(out, ".TP\n\\fB{}\\fR", roff(line.trim()));
        } else {
            if after_blank {
                out.push_str(".PP\n");
            }
            let _ = writeln!(out, "{}", roff(line.trim()));
        }
        after_blank = false;
    }
    if verbatim {
        out.push_str(".fi\n");
    }
    out
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut cmd = command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tailrace", &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
