use std::collections::HashMap;

use super::*;

fn scope_check(text: &str, field: Field) -> Result<Reads, Vec<String>> {
    let deps: HashMap<&str, u32> = [("a", 0), ("Code Review", 1)].into_iter().collect();
    let all: HashMap<&str, usize> = [("a", 0), ("Code Review", 1), ("other", 2), ("me", 3)].into_iter().collect();
    let scope = Scope { task: "me", deps: &deps, all: &all };
    check(text, field, &scope).map_err(|es| es.into_iter().map(|e| format!("{}: {}", e.offset, e.message)).collect())
}

fn quoting_of(cmd: &str) -> Vec<Result<Quoting, shell::Refusal>> {
    shell::quoting(&Parsed::new(cmd).expect("parses").segments())
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
        ("cat <<A <<'B'\n${{ run.id }}\nA\n${{ run.id }}\nB\n${{ run.id }}", &[Ok(Expanding), Err(QuotedHeredoc), Ok(Bare)]),
        ("cat <<< ${{ run.id }}", &[Ok(Bare)]),
        ("echo $(( ${{ run.id }} + 1 ))", &[Err(Arithmetic)]),
        ("(( ${{ run.id }} > 1 ))", &[Err(Arithmetic)]),
        ("echo $(( $(echo ${{ run.id }}) ))", &[Err(Arithmetic)]),
        ("echo $(( a[1] + (2) )) ${{ run.id }} $[ ${{ run.id }} ] \"${{ run.id }}\"", &[Ok(Bare), Err(Arithmetic), Ok(Expanding)]),
        ("echo ${a[1]} ${x:-a\\}b} ${{ run.id }}", &[Ok(Bare)]),
        ("let x=${{ run.id }}", &[Err(Arithmetic)]),
        ("declare -i n=${{ run.id }}", &[Err(Arithmetic)]),
        ("declare -i n; n=${{ run.id }}", &[Err(Arithmetic)]),
        ("a[${{ run.id }}]=1", &[Err(Arithmetic)]),
        ("a[1]=${{ run.id }}", &[Ok(Bare)]),
        ("x=${{ run.id }} y=\"${{ run.id }}\"", &[Ok(Bare), Ok(Expanding)]),
        ("[[ ${{ run.id }} -eq 1 ]]", &[Err(Arithmetic)]),
        ("[[ ${{ run.id }} == ok ]] && echo ${{ run.id }}", &[Ok(Bare), Ok(Bare)]),
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
    ];
    for (cmd, want) in cases {
        assert_eq!(quoting_of(cmd), want.to_vec(), "{cmd:?}");
    }
    // The plan refuses them with file positions at each reference.
    let e = scope_check("echo '${{ deps.a.output }}'", Field::Command).unwrap_err();
    assert!(e[0].starts_with("6: ") && e[0].contains("single quotes"), "{e:?}");
    // Prompts have no shell context.
    assert!(scope_check("echo '${{ deps.a.output }}'", Field::Prompt).is_ok());
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
