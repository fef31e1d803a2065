use std::collections::HashMap;

use super::*;

fn scope_check(text: &str, field: Field) -> Result<Reads, Vec<String>> {
    let deps: HashMap<&str, u32> = [("a", 0), ("Code Review", 1)].into_iter().collect();
    let all: HashMap<&str, usize> = [("a", 0), ("Code Review", 1), ("other", 2), ("me", 3)].into_iter().collect();
    let scope = Scope { task: "me", deps: &deps, all: &all };
    check(text, field, &scope).map_err(|es| es.into_iter().map(|e| format!("{}: {}", e.offset, e.message)).collect())
}

#[test]
fn plain_text_and_other_template_syntaxes_pass_through() {
    for text in [
        "docker ps --format '{{.Names}}'",
        "{% if x %}{# c #}{{ y }} ${#arr[@]} ${x} $((1+2))",
        "helm template --set a={{ .Values.x }}",
        "no template\n",
    ] {
        assert!(!is_template(text));
        assert_eq!(render_prompt(text, &Inputs::default()).unwrap(), text);
        assert_eq!(render_command(text, &Inputs::default()).unwrap(), text);
    }
    // Inside a template, the rest is byte-exact too, trailing newline kept.
    let inputs = Inputs { run_id: "r1".into(), task: "me".into(), ..Default::default() };
    let t = "{{ .x }} {% y %} {# z #} ${#v} ${{ run.id }} ${{ '${{' }}\n\n";
    assert_eq!(render_prompt(t, &inputs).unwrap(), "{{ .x }} {% y %} {# z #} ${#v} r1 ${{\n\n");
    assert!(scope_check(t, Field::Prompt).is_ok());
}

#[test]
fn references_are_checked_at_plan_time() {
    // (template, expected error fragment or "" when valid)
    let cases: &[(&str, &str)] = &[
        ("${{ deps.a.output }}", ""),
        ("${{ deps[\"Code Review\"].json.score | default(0) }}", ""),
        ("${{ deps.a.status == 'success' and deps.a.exit_code == 0 }}", ""),
        ("${{ deps.a.output | trim | upper }} ${{ task.name }} ${{ run.id }}", ""),
        ("${{ deps.a.output.upper() }}", ""),
        ("${{ deps.a.json['k'][0] }}", ""),
        ("${{ range(3) | join(',') }}", ""),
        ("${{ deps.other.output }}", "`other` is not a direct dependency of this task; add it to its `dependencies`"),
        ("${{ deps.nope.output }}", "`deps` has no task `nope`; its dependencies are `Code Review`, `a`"),
        ("${{ deps.aa.output }}", "did you mean `a`?"),
        ("${{ deps.me.output }}", "is this task itself"),
        ("${{ deps.a.outptu }}", "`deps.a` has no attribute `outptu`; did you mean `output`?"),
        ("${{ deps.a }}", "say what to read of `deps.a`"),
        ("${{ deps }}", "`deps` needs a task"),
        ("${{ deps[x].output }}", "not a computed key"),
        ("${{ run.name }}", "`run` has one attribute: use `run.id`"),
        ("${{ task }}", "`task` alone has no value"),
        ("${{ dep.a.output }}", "unknown name `dep`; did you mean `deps`?"),
        ("${{ deps.a.output | uper }}", "unknown filter `uper`; did you mean `upper`?"),
        ("${{ deps.a.output is strin }}", "unknown test `strin`; did you mean `string`?"),
        ("x ${{ deps.a.output", "template syntax error"),
        ("${{ 1 + }}", "template syntax error"),
        ("a\u{FFFF}${{ run.id }}", "U+FFFF"),
        ("${{ deps.other.output if deps.a.status == 'success' else deps.nope.output }}", "`other` is not a direct"),
    ];
    for (text, want) in cases {
        match (scope_check(text, Field::Prompt), *want) {
            (Ok(_), "") => {}
            (Ok(_), w) => panic!("{text:?}: expected an error with {w:?}, it passed"),
            (Err(e), "") => panic!("{text:?}: expected to pass, got {e:?}"),
            (Err(e), w) => assert!(e.iter().any(|m| m.contains(w)), "{text:?}: {e:?} lacks {w:?}"),
        }
    }
    // Both branches are checked; each error once, at its `${{`.
    let e = scope_check("ab ${{ deps.other.output if 1 else deps.nope.output }}", Field::Prompt).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e.iter().all(|m| m.starts_with("3: ")), "{e:?}");
    let reads = scope_check("${{ deps.a.output }}${{ deps['Code Review'].json.x }}", Field::Prompt).unwrap();
    assert_eq!(reads.deps.into_iter().collect::<Vec<_>>(), vec![("Code Review".to_string(), true), ("a".to_string(), false)]);
}

#[test]
fn shell_contexts_of_references() {
    use shell::Refusal::*;
    use Quoting::*;
    let cases: &[(&str, &[Result<Quoting, shell::Refusal>])] = &[
        ("echo ${{ run.id }}", &[Ok(Bare)]),
        ("echo \"x ${{ run.id }} y\"", &[Ok(Expanding)]),
        ("echo 'x ${{ run.id }}'", &[Err(SingleQuotes)]),
        ("echo 'a'${{ run.id }}'b'", &[Ok(Bare)]),
        ("echo $'a ${{ run.id }}'", &[Err(AnsiC)]),
        ("cat <<EOF\nline ${{ run.id }}\nEOF\necho ${{ run.id }}", &[Ok(Expanding), Ok(Bare)]),
        ("cat <<'EOF'\nline ${{ run.id }}\nEOF\necho \"${{ run.id }}\"", &[Err(QuotedHeredoc), Ok(Expanding)]),
        ("cat <<-\"E\"\n\t${{ run.id }}\n\tE\n", &[Err(QuotedHeredoc)]),
        ("cat <<\\E\n${{ run.id }}\nE\n", &[Err(QuotedHeredoc)]),
        ("cat <<A <<'B'\n${{ run.id }}\nA\n${{ run.id }}\nB\necho ${{ run.id }}", &[Ok(Expanding), Err(QuotedHeredoc), Ok(Bare)]),
        ("cat <<< ${{ run.id }}", &[Ok(Bare)]),
        ("echo $(( ${{ run.id }} + 1 ))", &[Err(Arithmetic)]),
        ("echo $(( ${{ run.id | length }} + 1 )) $(( \"${{ run.id | int }}\" ))", &[Ok(Bare), Ok(Expanding)]),
        ("(( ${{ run.id }} > 1 ))", &[Err(Arithmetic)]),
        ("echo $(( $(echo ${{ run.id }}) ))", &[Err(Arithmetic)]),
        ("echo $(( $(echo ${{ run.id | int }}) ))", &[Err(Arithmetic)]),
        ("echo $(( a[1] + (2) )) ${{ run.id }} $[ ${{ run.id }} ] \"${{ run.id }}\"", &[Ok(Bare), Err(Arithmetic), Ok(Expanding)]),
        ("echo ${a[1]} ${x:-a\\}b} ${{ run.id }}", &[Ok(Bare)]),
        ("let x=${{ run.id }}", &[Err(Arithmetic)]),
        ("let x=${{ run.id | int }}", &[Ok(Bare)]),
        ("declare -i n=${{ run.id }}", &[Err(DeclareOption)]),
        ("declare -i n; n=${{ run.id }}", &[Err(Attributed)]),
        ("n=${{ run.id }}; declare -i n", &[Err(Attributed)]),
        ("a[${{ run.id }}]=1", &[Err(Subscript)]),
        ("a[1]=${{ run.id }}", &[Ok(Bare)]),
        ("x=${{ run.id }} y=\"${{ run.id }}\"", &[Ok(Bare), Ok(Expanding)]),
        ("[[ ${{ run.id }} -eq 1 ]]", &[Err(Arithmetic)]),
        ("[[ ${{ run.id }} == ok ]] && echo ${{ run.id }}", &[Ok(Bare), Ok(Bare)]),
        ("[[ (${{ run.id }} == a) || x < y ]]", &[Ok(Bare)]),
        ("[ ${{ run.id }} -eq 1 ]", &[Ok(Bare)]),
        ("echo ${x:-${{ run.id }}}", &[Err(ParamExpansion)]),
        ("echo \"${x:-${{ run.id }}}\"", &[Err(ParamExpansion)]),
        ("echo `echo ${{ run.id }}`", &[Err(Backticks)]),
        ("echo \\${{ run.id }}", &[Err(AfterBackslash)]),
        ("echo \"\\${{ run.id }}\"", &[Err(AfterBackslash)]),
        ("echo $${{ run.id }}", &[Err(AfterDollar)]),
        ("echo \"$(printf %s ${{ run.id }})\"", &[Ok(Bare)]),
        ("echo \"$(printf %s \"${{ run.id }}\")\" ${{ run.id }}", &[Ok(Expanding), Ok(Bare)]),
        ("# note ${{ run.id }}\necho 'it''s' ${{ run.id }}", &[Ok(Bare), Ok(Bare)]),
        ("echo a#${{ run.id }}", &[Ok(Bare)]),
        ("cat <<${{ run.id }}\nx\n", &[Err(HeredocWord)]),
        ("diff <(echo ${{ run.id }}) <(echo \"${{ run.id }}\")", &[Ok(Bare), Ok(Expanding)]),
        ("for i in 1 2; do echo \"$i ${{ run.id }}\"; done", &[Ok(Expanding)]),
        ("echo \"it's ${{ run.id }}\"", &[Ok(Expanding)]),
        ("\"ec\"ho ${{ run.id }}; \\eval ${{ run.id }}", &[Ok(Bare), Err(Builtin(2))]),
        ("echo a | bash; echo ${{ run.id }}", &[Ok(Bare)]),
        ("echo ${{ run.id }} | bash -c 'cat'", &[Ok(Bare)]),
        ("echo ${{ run.id }} | bash", &[Err(IntoShell)]),
        ("case x in (a) echo ${{ run.id }} | bash ;; esac; echo ${{ run.id }}", &[Err(IntoShell), Ok(Bare)]),
        ("x=$(case a in a) echo ;; esac) ${{ run.id }}", &[Err(CommandName)]),
        ("echo ${{ run.id }} 2>&1 >out", &[Ok(Bare)]),
        ("echo &> ${{ run.id }}", &[Ok(Bare)]),
        ("declare x=(a b) ; x=${{ run.id }}", &[Err(Attributed)]),
        ("env X=${{ run.id }} bash -c 'echo $X'", &[Ok(Bare)]),
        ("time -p echo ${{ run.id }}", &[Ok(Bare)]),
        ("echo ${{ run.id }} ${{ run.id", &[Ok(Bare)]),
    ];
    for (cmd, want) in cases {
        let parsed = Parsed::new(cmd);
        let Ok(parsed) = parsed else { continue };
        assert_eq!(places_of(&parsed), want.to_vec(), "{cmd:?}");
    }
    // The plan refuses them with file positions at each reference.
    let e = scope_check("echo '${{ deps.a.output }}'", Field::Command).unwrap_err();
    assert!(e[0].starts_with("6: ") && e[0].contains("single quotes"), "{e:?}");
    // Prompts have no shell context.
    assert!(scope_check("echo '${{ deps.a.output }}'", Field::Prompt).is_ok());
}

fn places_of(parsed: &Parsed<'_>) -> Vec<Result<Quoting, shell::Refusal>> {
    judge_command(&parsed.segments()).into_iter().map(|(_, judged)| judged.map(|(q, _)| q)).collect()
}

/// The cases of `tests/data/shell-places.txt`: (command, `None` to accept or the fragment
/// of the refusal).
fn place_cases() -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/shell-places.txt")).expect("the cases file");
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("=== ") {
            let want = head.strip_prefix("refuse ").map(str::to_string);
            assert!(want.is_some() || head == "accept", "bad case header {line:?}");
            cases.push((String::new(), want));
        } else if let Some((cmd, _)) = cases.last_mut() {
            cmd.push_str(line);
            cmd.push('\n');
        }
    }
    for (cmd, _) in &mut cases {
        *cmd = cmd.trim_end().to_string();
        cmd.push('\n');
    }
    cases
}

#[test]
fn every_place_of_the_cases_file_is_judged_as_it_says() {
    let cases = place_cases();
    assert!(cases.len() > 100, "{} cases", cases.len());
    for (cmd, want) in &cases {
        match (scope_check(cmd, Field::Command), want) {
            (Ok(_), None) => {}
            (Ok(_), Some(w)) => panic!("{cmd:?}: expected a refusal with {w:?}, it passed"),
            (Err(e), None) => panic!("{cmd:?}: expected to pass, got {e:?}"),
            (Err(e), Some(w)) => assert!(e.iter().any(|m| m.contains(w.as_str())), "{cmd:?}: {e:?} lacks {w:?}"),
        }
    }
}

#[test]
fn numbers_reach_arithmetic_only_as_integers() {
    let i = inputs("{\"score\": \"a[$(touch /tmp/x)]\", \"n\": 9, \"f\": 2.5}");
    let e = render_command("[[ ${{ deps.a.json.score | int }} -gt 7 ]]", &i).unwrap_err();
    assert!(e.contains("deps.a.json.score is not a number: a[$(touch /tmp/x)]"), "{e}");
    let s = render_command("[[ ${{ deps.a.json.n | int }} -gt 7 ]] && (( ${{ deps.a.json.f | int }} < 3 ))", &i).unwrap();
    assert!(s.contains("\n9\nZO_VALUE_END_") && s.contains("\n2\nZO_VALUE_END_"), "{s}");
    assert_eq!(render_command("(( ${{ deps.a.json.score | int(default=0) }} ))", &i).map(|s| s.contains("\n0\nZO_")), Ok(true));
    // `length` counts; plain text places take any value.
    assert!(render_command("echo $(( ${{ deps.a.output | length }} ))", &i).is_ok());
    assert!(render_command("echo ${{ deps.a.json.score }}", &i).is_ok());
}

#[test]
fn rendering_stops_at_its_fuel_before_it_allocates() {
    let i = inputs("x");
    for t in [
        "${{ range(100000) | join(\"y\" * 100000) | length }}",
        "${{ \"y\" * 200000000 }}",
        "${{ range(100000) | join(range(100000) | join) | length }}",
    ] {
        let e = render_prompt(t, &i).unwrap_err();
        assert!(e.contains("rendering stopped at its limit"), "{t}: {e}");
        let e = render_command(&format!("echo {t}"), &i).unwrap_err();
        assert!(e.contains("rendering stopped at its limit"), "{t}: {e}");
    }
    // What fits renders: 32 MiB built from a 32 MiB output.
    let big = "z".repeat(32 << 20);
    assert_eq!(render_prompt("${{ deps.a.output }}", &inputs(&big)).unwrap().len(), 32 << 20);
    // Past MAX_RENDERED (64 MiB) it is refused, saying what to do instead.
    let e = render_prompt("${{ deps.a.output }}${{ deps.a.output }}${{ deps.a.output }}", &inputs(&big)).unwrap_err();
    assert!(e.contains("64 MiB") && e.contains("read large outputs from files instead"), "{e}");
}

fn inputs(output: &str) -> Inputs {
    let mut i = Inputs { run_id: "run-1".into(), task: "me".into(), ..Default::default() };
    let d = DepInput { status: "success".into(), output: output.into(), command_output: "cmd out".into(), exit_code: Some(0) };
    i.deps.insert("a".into(), (d, true));
    i.deps.insert("p".into(), (DepInput { status: "pending".into(), ..Default::default() }, false));
    i
}

#[test]
fn prompts_get_values_verbatim() {
    let i = inputs("Here:\n```json\n{\"score\": 9, \"tags\": [\"x\"]}\n```\n");
    let out = render_prompt(
        "s=${{ deps.a.json.score }} t=${{ deps.a.json.tags }} e=${{ deps.a.exit_code }} c=${{ deps.a.command_output }} p=[${{ deps.p.status }}|${{ deps.p.output }}|${{ deps.p.exit_code }}]",
        &i,
    )
    .unwrap();
    assert_eq!(out, "s=9 t=[\"x\"] e=0 c=cmd out p=[pending||]");
    let hostile = "'\"$(touch /tmp/x)`id`\n\u{0}end";
    assert_eq!(render_prompt("<${{ deps.a.output }}>", &inputs(hostile)).unwrap(), "<'\"$(touch /tmp/x)`id`\nend>");
    // A missing JSON field or no JSON at all: a clear error, never a crash.
    let e = render_prompt("${{ deps.a.json.nope }}", &inputs("{\"score\": 1}")).unwrap_err();
    assert!(e.contains("deps.a.json.nope") && e.contains("undefined"), "{e}");
    let e = render_prompt("x\n${{ deps.a.json.score }}", &inputs("plain words")).unwrap_err();
    assert!(e.contains("line 2") && e.contains("holds no JSON"), "{e}");
    assert_eq!(render_prompt("${{ deps.a.json.score | default('n/a') }}", &inputs("plain words")).unwrap(), "n/a");
    assert_eq!(render_prompt("${{ deps.a.json.score | default('n/a') }}", &inputs("{\"score\": 3}")).unwrap(), "3");
    assert_eq!(render_prompt("${{ deps.a.status == 'success' }}/${{ deps.p.exit_code is none }}", &inputs("x")).unwrap(), "true/true");
}

#[test]
fn commands_get_values_as_variables() {
    let i = inputs("v1");
    let s = render_command("echo ${{ deps.a.output }} \"${{ run.id }}\"\n", &i).unwrap();
    let (prelude, body) = s.split_at(s.find("echo ").unwrap());
    assert_eq!(body, "echo \"${__zo_v0}\" \"${__zo_v1}\"\n");
    assert!(prelude.contains("IFS= read -r -d '' __zo_v0 <<'ZO_VALUE_END_"), "{prelude}");
    assert!(prelude.contains("\nv1\nZO_VALUE_END_") && prelude.contains("\nrun-1\nZO_VALUE_END_"), "{prelude}");
    // Refused contexts are refused at render time too (a spec not from the planner).
    assert!(render_command("echo '${{ run.id }}'", &i).unwrap_err().contains("single quotes"));
}
