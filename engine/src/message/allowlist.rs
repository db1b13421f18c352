//! The template syntax campaigns may use, checked before a template is compiled.
//!
//! [`super::CampaignTemplate`] runs [`check`] on every part before handing it to
//! minijinja, so campaign creation (422) and every send (the job fails) refuse
//! the same templates. Fuel counts instructions, not bytes, and the capped writer
//! only bounds what is written out: a few instructions building a string in a
//! variable (`{% set a = a ~ a %}` thirty times, `"x" * 99999999`,
//! `replace("x", "xx")` chained) can allocate gigabytes before anything is
//! written. So the check walks minijinja's AST and allows only what a
//! cold-outreach email needs, none of which can make a value much larger than
//! the lead data and the template it came from:
//! - text, `{{ expression }}`, `{% if %}/{% elif %}/{% else %}` and `{% for %}`
//!   (output is bounded by fuel and the capped writer, and without assignment
//!   nothing accumulates between iterations);
//! - variables, `.attr` and `[item]` access, slices, string/number/bool/none
//!   literals, list and map literals (nothing can repeat or join them), `a if b
//!   else c`;
//! - comparisons, `in`, `and`/`or`/`not`, and the numeric `-`, `/`, `//`, `%`
//!   (minijinja refuses them on strings);
//! - tests (`is defined`, `is none`…: they answer a boolean);
//! - the filters in [`FILTERS`], whose output is at most a small multiple of
//!   their input, at most [`MAX_NESTED_FILTERS`] deep in one expression (an
//!   `escape` after a `title` grows a string again, so chains are kept short);
//! - the `range` function (minijinja caps a range at 100,000 items).
//!
//! Everything else is refused, naming the construct: `+`, `*`, `**`, `~`
//! (concatenation and repetition), `set` (statement and block) and `with`
//! (assignment), `macro`, `call`, `filter` and `autoescape` blocks, `do`,
//! `include`/`import`/`extends`/`block`, every other function (`namespace`,
//! `dict`, `debug`…), method calls, and every other filter (`join`, `replace`,
//! `indent`, `tojson`, `pprint`, `string`, `format`, `map`…).
//!
//! The check also runs before minijinja's compiler, which folds constant
//! expressions: `{{ "x" * 99999999 }}` would otherwise allocate at compile time.

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt};
use minijinja::machinery::{WhitespaceConfig, parse};
use minijinja::syntax::SyntaxConfig;

/// Filters whose output is at most a small multiple of their input: the
/// value or the default (`default`, `d`, `first`, `last`, `safe`, `trim`), a
/// number (`length`, `count`, `int`, `float`, `abs`, `round`), a case change (at
/// most 3× the bytes, once: `upper`, `lower`, `title`, `capitalize`) or HTML
/// escaping (at most 6×; an escaped string is not escaped again).
pub const FILTERS: &[&str] = &[
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "last",
    "length",
    "lower",
    "round",
    "safe",
    "title",
    "trim",
    "upper",
];

/// The one function templates may call.
pub const FUNCTIONS: &[&str] = &["range"];

/// Most filters nested in one expression (`a|f|g|h|i` is 4).
pub const MAX_NESTED_FILTERS: usize = 4;

const BUILDS_STRINGS: &str = "it can build unbounded strings";
const ASSIGNS: &str = "values cannot be stored in templates";
const NOT_NEEDED: &str = "campaign templates do not need it";
/// [`FILTERS`] in words, for the refusal of any other filter.
const OTHER_FILTER: &str = "allowed filters: abs, capitalize, count, d, default, e, escape, \
                            first, float, int, last, length, lower, round, safe, title, trim, upper";

/// A construct outside the allowlist: Display reads
/// `the "~" operator is not allowed in templates (it can build unbounded strings)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{construct} is not allowed in templates ({why})")]
pub struct Refusal {
    /// What the template used, e.g. `the "indent" filter`.
    pub construct: String,
    /// Why it is refused.
    pub why: &'static str,
}

/// Why [`check`] refused a template.
#[derive(Debug)]
pub(super) enum CheckError {
    Syntax(minijinja::Error),
    Refused(Refusal),
}

/// Parses `source` (named `name` in syntax errors) and walks it: the first
/// construct outside the allowlist, in source order, is the refusal.
pub(super) fn check(name: &str, source: &str) -> Result<(), CheckError> {
    let whitespace = WhitespaceConfig {
        keep_trailing_newline: true,
        ..WhitespaceConfig::default()
    };
    // A unit struct today; a real config should minijinja's `custom_syntax` be enabled.
    #[allow(clippy::default_constructed_unit_structs)]
    let syntax = SyntaxConfig::default();
    let ast = parse(source, name, syntax, whitespace).map_err(CheckError::Syntax)?;
    stmt(&ast).map_err(CheckError::Refused)
}

fn refuse(construct: impl Into<String>, why: &'static str) -> Result<(), Refusal> {
    Err(Refusal {
        construct: construct.into(),
        why,
    })
}

fn stmts(body: &[Stmt<'_>]) -> Result<(), Refusal> {
    body.iter().try_for_each(stmt)
}

fn stmt(node: &Stmt<'_>) -> Result<(), Refusal> {
    match node {
        Stmt::Template(template) => stmts(&template.children),
        Stmt::EmitRaw(_) => Ok(()),
        Stmt::EmitExpr(emit) => expr(&emit.expr, 0),
        Stmt::IfCond(cond) => {
            expr(&cond.expr, 0)?;
            stmts(&cond.true_body)?;
            stmts(&cond.false_body)
        }
        Stmt::ForLoop(for_loop) => {
            expr(&for_loop.target, 0)?;
            expr(&for_loop.iter, 0)?;
            if let Some(filter) = &for_loop.filter_expr {
                expr(filter, 0)?;
            }
            stmts(&for_loop.body)?;
            stmts(&for_loop.else_body)
        }
        Stmt::Set(_) => refuse(r#"the "set" statement"#, ASSIGNS),
        Stmt::SetBlock(_) => refuse(r#"the "set" block"#, ASSIGNS),
        Stmt::WithBlock(_) => refuse(r#"the "with" block"#, ASSIGNS),
        Stmt::Macro(_) => refuse(r#"the "macro" statement"#, BUILDS_STRINGS),
        Stmt::CallBlock(_) => refuse(r#"the "call" block"#, BUILDS_STRINGS),
        Stmt::FilterBlock(_) => refuse(r#"the "filter" block"#, BUILDS_STRINGS),
        Stmt::Do(_) => refuse(r#"the "do" statement"#, NOT_NEEDED),
        Stmt::AutoEscape(_) => refuse(r#"the "autoescape" block"#, NOT_NEEDED),
        Stmt::Block(_) => refuse(r#"the "block" statement"#, NOT_NEEDED),
        Stmt::Extends(_) => refuse(r#"the "extends" statement"#, NOT_NEEDED),
        Stmt::Include(_) => refuse(r#"the "include" statement"#, NOT_NEEDED),
        Stmt::Import(_) | Stmt::FromImport(_) => refuse(r#"the "import" statement"#, NOT_NEEDED),
        // Statements behind minijinja features this workspace does not enable
        // (`break`, `continue`): refused should a feature bring them in.
        #[allow(unreachable_patterns)]
        _ => refuse("this statement", NOT_NEEDED),
    }
}

/// `filters`: how many filters enclose `node` in its expression.
fn expr(node: &Expr<'_>, filters: usize) -> Result<(), Refusal> {
    match node {
        Expr::Var(_) | Expr::Const(_) => Ok(()),
        Expr::GetAttr(get) => expr(&get.expr, filters),
        Expr::GetItem(get) => {
            expr(&get.expr, filters)?;
            expr(&get.subscript_expr, filters)
        }
        Expr::Slice(slice) => {
            expr(&slice.expr, filters)?;
            [&slice.start, &slice.stop, &slice.step]
                .into_iter()
                .flatten()
                .try_for_each(|bound| expr(bound, filters))
        }
        Expr::UnaryOp(unary) => expr(&unary.expr, filters),
        Expr::BinOp(binary) => {
            let operator = match binary.op {
                BinOpKind::Concat => Some("~"),
                BinOpKind::Add => Some("+"),
                BinOpKind::Mul => Some("*"),
                BinOpKind::Pow => Some("**"),
                _ => None,
            };
            if let Some(operator) = operator {
                return refuse(format!("the {operator:?} operator"), BUILDS_STRINGS);
            }
            expr(&binary.left, filters)?;
            expr(&binary.right, filters)
        }
        Expr::Compare(compare) => {
            expr(&compare.expr, filters)?;
            compare
                .ops
                .iter()
                .try_for_each(|op| expr(&op.expr, filters))
        }
        Expr::IfExpr(if_expr) => {
            expr(&if_expr.test_expr, filters)?;
            expr(&if_expr.true_expr, filters)?;
            if let Some(false_expr) = &if_expr.false_expr {
                expr(false_expr, filters)?;
            }
            Ok(())
        }
        Expr::Filter(filter) => {
            if !FILTERS.contains(&filter.name) {
                return refuse(format!("the {:?} filter", filter.name), OTHER_FILTER);
            }
            let filters = filters + 1;
            if filters > MAX_NESTED_FILTERS {
                return refuse(
                    format!("more than {MAX_NESTED_FILTERS} filters in one expression"),
                    BUILDS_STRINGS,
                );
            }
            if let Some(input) = &filter.expr {
                expr(input, filters)?;
            }
            args(&filter.args, filters)
        }
        Expr::Test(test) => {
            expr(&test.expr, filters)?;
            args(&test.args, filters)
        }
        Expr::Call(call) => match &call.expr {
            Expr::Var(function) if FUNCTIONS.contains(&function.id) => args(&call.args, filters),
            Expr::Var(function) => refuse(format!("the {:?} function", function.id), NOT_NEEDED),
            Expr::GetAttr(method) => refuse(format!("the {:?} method", method.name), NOT_NEEDED),
            _ => refuse("this call", NOT_NEEDED),
        },
        Expr::List(list) => list.items.iter().try_for_each(|item| expr(item, filters)),
        Expr::Map(map) => map
            .keys
            .iter()
            .chain(&map.values)
            .try_for_each(|item| expr(item, filters)),
    }
}

fn args(args: &[CallArg<'_>], filters: usize) -> Result<(), Refusal> {
    args.iter().try_for_each(|arg| match arg {
        CallArg::Pos(value)
        | CallArg::Kwarg(_, value)
        | CallArg::PosSplat(value)
        | CallArg::KwargSplat(value) => expr(value, filters),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{CampaignTemplate, TemplateError, TemplatePart};

    /// Compiles `source` as the text part.
    fn compile_text(source: &str) -> Result<CampaignTemplate, TemplateError> {
        CampaignTemplate::compile("a@sender.test", None, "Hi", source, None)
    }

    fn refusal(source: &str) -> String {
        match compile_text(source) {
            Err(TemplateError::Refused {
                part: TemplatePart::Text,
                refusal,
            }) => refusal.to_string(),
            Err(other) => panic!("{source:?}: not a refusal: {other}"),
            Ok(_) => panic!("{source:?} compiled"),
        }
    }

    #[test]
    fn the_refusal_names_the_part_and_the_construct() {
        let err = CampaignTemplate::compile("a@b.test", None, "{{ a ~ b }}", "t", None)
            .err()
            .unwrap();
        assert_eq!(err.part(), Some(TemplatePart::Subject));
        assert!(!err.is_budget());
        assert_eq!(
            err.to_string(),
            r#"subject: the "~" operator is not allowed in templates (it can build unbounded strings)"#
        );
        let err = CampaignTemplate::dry_run(
            "a@b.test",
            None,
            "s",
            "t",
            Some("<p>{{ x|join(',') }}</p>"),
            crate::message::RenderBudget::default(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().starts_with(
                r#"html: the "join" filter is not allowed in templates (allowed filters: abs,"#
            ),
            "{err}"
        );
    }

    #[test]
    fn every_construct_outside_the_allowlist_is_refused_by_name() {
        for (source, construct) in [
            ("{{ a ~ b }}", r#"the "~" operator"#),
            ("{{ a + b }}", r#"the "+" operator"#),
            ("{{ a * 3 }}", r#"the "*" operator"#),
            ("{{ 2 ** 8 }}", r#"the "**" operator"#),
            ("{% set a = 1 %}", r#"the "set" statement"#),
            ("{% set a %}x{% endset %}", r#"the "set" block"#),
            (
                "{% with a = 1 %}{{ a }}{% endwith %}",
                r#"the "with" block"#,
            ),
            ("{% macro m() %}x{% endmacro %}", r#"the "macro" statement"#),
            ("{% call m() %}x{% endcall %}", r#"the "call" block"#),
            (
                "{% filter upper %}x{% endfilter %}",
                r#"the "filter" block"#,
            ),
            (
                "{% autoescape false %}x{% endautoescape %}",
                r#"the "autoescape" block"#,
            ),
            ("{% do range(3) %}", r#"the "do" statement"#),
            ("{% include 'x' %}", r#"the "include" statement"#),
            ("{% import 'x' as y %}", r#"the "import" statement"#),
            ("{% from 'x' import y %}", r#"the "import" statement"#),
            ("{% extends 'x' %}", r#"the "extends" statement"#),
            ("{% block b %}x{% endblock %}", r#"the "block" statement"#),
            ("{{ namespace(a=1) }}", r#"the "namespace" function"#),
            ("{{ dict(a=1) }}", r#"the "dict" function"#),
            ("{{ debug() }}", r#"the "debug" function"#),
            ("{{ loop.cycle('a', 'b') }}", r#"the "cycle" method"#),
            ("{{ a|indent(4) }}", r#"the "indent" filter"#),
            ("{{ a|replace('x', 'y') }}", r#"the "replace" filter"#),
            ("{{ a|join(', ') }}", r#"the "join" filter"#),
            ("{{ a|tojson }}", r#"the "tojson" filter"#),
            ("{{ a|pprint }}", r#"the "pprint" filter"#),
            ("{{ a|string }}", r#"the "string" filter"#),
            ("{{ a|format(1) }}", r#"the "format" filter"#),
            ("{{ a|map('upper') }}", r#"the "map" filter"#),
            (
                "{{ a|e|title|e|title|e }}",
                "more than 4 filters in one expression",
            ),
            // Refused anywhere in the tree, not only at the top.
            (
                "{% if x %}{% for i in y %}{{ i ~ i }}{% endfor %}{% endif %}",
                r#"the "~" operator"#,
            ),
            ("{{ a|default(b|join(',')) }}", r#"the "join" filter"#),
            (
                "{% for i in range(a * 2) %}{% endfor %}",
                r#"the "*" operator"#,
            ),
        ] {
            let refused = refusal(source);
            assert!(
                refused.starts_with(&format!("{construct} is not allowed in templates (")),
                "{source:?}: {refused}"
            );
        }
    }

    #[test]
    fn the_memory_bombs_are_refused_before_minijinja_compiles_them() {
        // Never rendered, and never folded: the check runs before codegen.
        let doubling = "{% set a = a ~ a %}".repeat(30);
        let namespace_doubling = "{% set ns.a = ns.a ~ ns.a %}".repeat(30);
        let replace_chain = "|replace('x', 'xx')".repeat(30);
        let bombs = [
            format!("{{% set a = \"x\" * 99999999 %}}{doubling}{{{{ a }}}}"),
            "{{ \"x\" * 99999999 }}".to_string(),
            "{{ (\"x\" * 99999999) ~ (\"x\" * 99999999) }}".to_string(),
            format!("{{% set ns = namespace(a='x') %}}{namespace_doubling}"),
            "{% set ns = namespace(a='x') %}{% set ns.a = ns.a + ns.a %}".to_string(),
            "{% set a %}{{ b }}{{ b }}{% endset %}".to_string(),
            "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{{ m(m(m('x'))) }}".to_string(),
            "{{ 'x'|indent(99999999) }}".to_string(),
            "{{ 'x'|indent(99999999)|indent(99999999) }}".to_string(),
            format!("{{{{ 'x'{replace_chain} }}}}"),
            "{{ range(100000)|join('x' * 1000) }}".to_string(),
            format!("{{{{ range(100000)|join('{}') }}}}", "y".repeat(500)),
            "{{ [big, big, big, big]|tojson|tojson|tojson }}".to_string(),
            "{{ [big, big, big, big]|pprint }}".to_string(),
            "{{ [[[[big]|string]|string]|string]|string }}".to_string(),
            "{{ big|e|title|e|title|e|title|e|title }}".to_string(),
            "{{ [big] * 99999999 }}".to_string(),
        ];
        for bomb in &bombs {
            assert!(
                matches!(compile_text(bomb), Err(TemplateError::Refused { .. })),
                "{bomb:?}"
            );
        }
    }

    #[test]
    fn the_templates_campaigns_use_still_compile() {
        for source in [
            // Engine tests, e2e scenarios, demo/bench (src/scenario.rs,
            // src/commands/bench_import.rs, benches/) and the README.
            "Hi {{first_name}}",
            "Hi {{first_name}}, a quick question",
            "Hello {{first_name}} of {{company}}",
            "Hi {{first_name}}, a question about {{company}}",
            "Hello {{ first_name }},\nhow are you?\n",
            "<p>Hello {{ first_name }}</p>",
            "Hello {{ first_name }} ({{ email }})\nUnsubscribe: {{ unsubscribe_url }}\n",
            "Hi {{ name }},\n.a line starting with a dot\n..two dots\n",
            "{{ first_name|title }}",
            "{% if company %}{{ company }}{% endif %}",
            "{% for i in range(n) %}{{ big }}{% endfor %}",
            "{% for i in range(100000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
            "Hi {{ first_name }}{% for i in range(subject_x|int) %}x{% endfor %}",
            // What cold outreach needs.
            "Hi {{ first_name | default(\"there\") }}",
            "{{ first_name|d('there')|trim|title }}",
            "{{ company|upper }} {{ company|lower }} {{ city|capitalize }} {{ bio|e|safe }}",
            "{% if title == 'CEO' and employees > 50 or not (region in ['EU', 'UK']) %}a\
             {% elif score >= 3.5 %}b{% else %}c{% endif %}",
            "{% if phone is defined and fax is none %}call{% endif %}",
            "{% for x in interests %}{{ x }}{% if not loop.last %}, {% endif %}\
             {% else %}nothing{% endfor %}",
            "{% for k, v in pairs %}{{ k }}={{ v }}{% endfor %}",
            "{{ name[0] }}{{ name[1:4] }}{{ profile.city }}{{ profile['zip'] }}",
            "{{ tags|length }} {{ tags|count }} {{ tags|first }} {{ tags|last }}",
            "{{ n|int - 1 }} {{ n|float / 2 }} {{ n // 3 }} {{ n % 2 }} {{ -n|abs }}",
            "{{ score|round(1) }} {{ 'yes' if vip else 'no' }} {{ none }} {{ true }}",
            "{% for i in range(1, 10, 2) if i is odd %}{{ loop.index }}{% endfor %}",
        ] {
            compile_text(source).unwrap_or_else(|err| panic!("{source:?}: {err}"));
        }
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for source in ["{{ broken", "<p>{% if %}</p>"] {
            assert!(
                matches!(compile_text(source), Err(TemplateError::Syntax { .. })),
                "{source:?}"
            );
        }
    }

    #[test]
    fn four_nested_filters_pass_five_do_not() {
        assert!(compile_text("{{ a|e|title|e|title }}").is_ok());
        assert!(compile_text("{{ a|default(b|e|title|e) }}").is_ok());
        assert!(compile_text("{{ a|default(b|e|title|e|title) }}").is_err());
    }

    #[test]
    fn the_refusal_text_lists_exactly_the_allowed_filters() {
        let listed = OTHER_FILTER.trim_start_matches("allowed filters: ");
        let listed: Vec<&str> = listed.split(", ").collect();
        assert_eq!(listed, FILTERS);
    }
}
