//! `tailrace-aggregator check-metadata`: every row CloudWatch or the join
//! would get wrong is printed as `FILE:LINE: reason`, and the exit status
//! is 1; a good file exits 0.

use std::process::Command;

fn check(text: &str, name: &str) -> anyhow::Result<(i32, String)> {
    let dir = std::env::temp_dir().join(format!("tailrace-check-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("apps.csv");
    std::fs::write(&file, text)?;
    let out = Command::new(env!("CARGO_BIN_EXE_tailrace-aggregator"))
        .arg("check-metadata")
        .arg(&file)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&file.display().to_string(), "F");
    std::fs::remove_dir_all(&dir)?;
    Ok((out.status.code().unwrap_or(-1), stdout))
}

#[test]
fn names_cloudwatch_would_refuse_and_the_reserved_unknown_are_reported_by_line(
) -> anyhow::Result<()> {
    let (code, out) = check(
        "ip_or_cidr,application,contact\n\
         10.0.0.0/8,corp,corp@example.com\n\
         10.1.0.0/16,b\u{fc}ro,x\n\
         10.2.0.0/16,unknown,x\n\
         ::ffff:10.3.0.0/112,mapped,x\n\
         10.3.0.0/16,again,x\n",
        "bad",
    )?;
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("F:3: application `b\u{fc}ro`: character 2"),
        "{out}"
    );
    assert!(lines[0].contains("not ASCII"), "{out}");
    assert!(
        lines[1].starts_with("F:4: application `unknown` is reserved"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("F:6: 10.3.0.0/16 is already listed on row 5"),
        "{out}"
    );
    assert_eq!(lines[3], "F: 2 entries, 3 wrong rows");

    let (code, out) = check(
        "ip_or_cidr,application,contact\n10.0.0.0/8,corp,corp@example.com\n",
        "good",
    )?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "F: 1 entries, 0 wrong rows");
    Ok(())
}
