"""Renders small templates with Jinja2 (3.1.x) set up as transformers does; writes jinja-cases.json.

Run from this folder: python3 make_jinja_cases.py. The C# tests compare our engine with this output.
"""
import json
import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

CTX = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi  there\n"},
        {"role": "assistant", "content": "<think>x</think>Hello!", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": [True, None, 2.5]}}}]},
    ],
    "s": "  Hello, World  ",
    "n": 7,
    "f": 2.5,
    "lst": [3, 1, 2],
    "words": ["b", "A", "c", "a"],
    "d": {"b": 2, "a": 1, "items": "shadowed"},
    "e": "",
    "u": "Café ☕ — 你好",
}

CASES = [
    # whitespace control, trim_blocks, lstrip_blocks
    "a\n  {% if true %}\n  x\n  {% endif %}\nb",
    "a  {%- if true -%}  x  {%- endif -%}  b",
    "a\n{{- ' x ' -}}\nb",
    "a {{ 'x' }} \n  {{ 'y' }}\n",
    "  {# comment #}\nline",
    "a {#- comment -#} b",
    "{% for i in lst %}\n  {{ i }}\n{% endfor %}\n",
    "x {%+ if true %}y{% endif +%}\nz",
    "text\r\nmore\r\n",
    "{% raw %}{{ not rendered }}{% endraw %}",
    # literals and printing
    "{{ 'a\\tb\\n' }}|{{ \"q'\" }}|{{ 'x' 'y' }}",
    "{{ 1 }} {{ 1.0 }} {{ 1e-5 }} {{ 1.5e16 }} {{ 123456789.125 }} {{ 0.1 + 0.2 }} {{ -0.0 }}",
    "{{ true }} {{ True }} {{ none }} {{ None }} {{ false }}",
    "{{ [1, 'a', \"it's\", none, true, 2.0] }}",
    "{{ {'a': 1, 'b': [1, 2]} }} {{ (1,) }} {{ (1, 'x') }} {{ () }}",
    "{{ d }}",
    "{{ u }}|{{ u|length }}|{{ u[0] }}",
    # arithmetic
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }}",
    "{{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ -n }} {{ +n }} {{ n - 1 }} {{ f * 2 }}",
    "{{ 'ab' ~ 1 ~ none ~ true }}|{{ 'ab' + 'cd' }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}|{{ [0] * 3 }}",
    "{{ '%s and %d' % ('x', 3) }}|{{ '%05.2f' % 3.14159 }}|{{ 'v=%s' % 5 }}",
    "{{ 1 == 1.0 }} {{ 1 != 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 3 >= 3 }} {{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }}",
    "{{ 'a' in 'cat' }} {{ 2 in lst }} {{ 'a' in d }} {{ 'z' not in d }} {{ 5 not in lst }}",
    "{{ true and 'x' }}|{{ false or 'y' }}|{{ not e }}|{{ e or 'empty' }}|{{ 0 and 1 }}",
    "{{ 'yes' if n > 5 else 'no' }}|{{ 'yes' if n > 50 }}|{{ 'a' if false else 'b' if true else 'c' }}",
    # attribute and item access
    "{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[-1].role }} {{ messages.0.role }}",
    "{{ d.a }} {{ d['items'] }} {{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }}",
    "{{ d.items() }}|{{ d.keys() }}|{{ d.values() }}|{{ 'a' in d.keys() }}{{ 1 in d.values() }}{{ ('a', 1) in d.items() }}|{{ d.values() | length }}|{{ d.keys() | first }}|{{ d.items() is iterable }}{{ d.items() is sequence }}|{{ (d.items())[0] is defined }}|{{ d.keys() | join(',') }}|{{ d.keys() | sort | list }}",
    "{{ d.items() | tojson }}",
    "{% set k, v = {'x': 1}.items() | first %}{{ k }}{{ v }}{% for a, b in d.items() if b is number %}{{ a }}{{ b }}{% endfor %}",
    "{{ d.missing }}|{{ d.missing is defined }}|{{ lst[10] is defined }}|{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }}",
    "{{ messages[2].tool_calls[0].function.arguments | tojson }}",
    # slicing
    "{{ lst[::-1] }} {{ lst[1:] }} {{ lst[:-1] }} {{ lst[::2] }} {{ lst[-2:] }} {{ lst[5:] }} {{ lst[:-5] }}",
    "{{ 'abcdef'[::-1] }} {{ 'abcdef'[1:4] }} {{ 'abcdef'[-3:] }} {{ 'abcdef'[::-2] }} {{ 'abcdef'[4:1:-1] }} {{ 'abcdef'[-1:-4:-1] }}",
    "{% for m in messages[::-1] %}{{ m.role }},{% endfor %}",
    # loops
    "{% for x in lst %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
    "{% for x in lst %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}",
    "{% for x in lst if x > 1 %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in lst if x > 10 %}x{% else %}none{% endfor %}",
    "{% for x in lst %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for k, v in d | dictsort %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}",
    "{% for a, b in [(1, 2), [3, 4]] %}{{ a + b }}{% endfor %}|{% for c in 'hey' %}{{ c }}.{% endfor %}",
    "{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}|{{ range(2, 5) | list }}",
    "{% for x in lst %}{% for y in 'ab' %}{{ loop.index }}{{ y }}{% endfor %}{{ loop.index }} {% endfor %}",
    "{% for x in lst %}{{ loop.cycle('odd', 'even') }} {% endfor %}",
    # set, scoping, namespace
    "{% set x = 1 %}{% for i in lst %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}",
    "{% set ns = namespace(total=0, names=[]) %}{% for i in lst %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set (c, d2) = [3, 4] %}{{ c }}{{ d2 }}",
    "{% set block %}\n  inner {{ n }}\n{% endset %}[{{ block }}]",
    "{% set block | upper %}abc{% endset %}{{ block }}",
    "{% if true %}{% set inside = 'yes' %}{% endif %}{{ inside }}",
    # Jinja2's frames: a nested frame reading a name its parent frame assigns later gets undefined
    "{{ n }}{% set n = 5 %}{{ n }}",
    "{% for i in [1] %}{{ n }}{% endfor %}{% set n = 5 %}{{ n }}",
    "{% for i in [1] %}{{ n }}{% set n = 8 %}{{ n }}{% endfor %}{% set n = 5 %}{{ n }}",
    "{% macro m() %}[{{ n }}]{% endmacro %}{{ m() }}{% set n = 5 %}{{ m() }}",
    "{% filter upper %}[{{ n }}]{% endfilter %}{% set n = 5 %}",
    "{% set y %}[{{ n }}]{% endset %}{{ y }}{% set n = 5 %}",
    "{% if n is not defined %}{% set n = 1 %}{% endif %}{% for i in [1] %}{{ n }}{% endfor %}",
    "{% for i in [1] %}{% for j in [1] %}[{{ n }}]{% endfor %}{% set n = 9 %}{% endfor %}",
    "{% for i in [1] %}{{ n }}{% endfor %}{% for i in [1] %}{% set n = 1 %}{% endfor %}",
    "{% set y %}{% set z = 1 %}{% endset %}[{{ z }}]|{% filter upper %}{% set z = 1 %}{% endfilter %}[{{ z }}]",
    "{% for i in [1, 2] %}{% macro m() %}{{ i }}{% endmacro %}{{ m() }}{% endfor %}",
    "{% for i in [1] %}{{ mm }}{% endfor %}{% macro mm() %}{% endmacro %}",
    "{% set n, k = 1, 2 %}{% for i in [1] %}{{ n }}{{ k }}{% endfor %}",
    "{% with a = 1, b = n %}{{ a }}{{ b }}{% set c = 3 %}{{ c }}{% endwith %}[{{ a }}{{ c }}]",
    "{% with n = 2, m = n %}{{ n }}{{ m }}{% endwith %}{{ n }}",
    # macros
    "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }}",
    "{% macro m(a) %}[{{ a }}|{{ n }}]{% endmacro %}{% set n = 9 %}{{ m(1) }}",
    "{% macro rec(k) %}{{ k }}{% if k > 0 %}{{ rec(k - 1) }}{% endif %}{% endmacro %}{{ rec(3) }}",
    "{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, x=3) }}",
    "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inside{% endcall %}",
    # filters
    "{{ s | trim }}|{{ s | length }}|{{ s | upper }}|{{ s | lower }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}",
    "{{ lst | join(', ') }}|{{ lst | first }}|{{ lst | last }}|{{ lst | sort }}|{{ lst | sort(reverse=true) }}|{{ lst | reverse | list }}",
    "{{ words | sort }}|{{ words | sort(case_sensitive=true) }}|{{ words | unique | list }}|{{ messages | map(attribute='role') | join('/') }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}",
    "{{ lst | select('odd') | list }}|{{ lst | reject('odd') | list }}|{{ [0, 1, '', 'a'] | select | list }}|{{ words | map('upper') | list }}",
    "{{ undefined_var | default('dflt') }}|{{ e | default('dflt') }}|{{ e | default('dflt', true) }}|{{ none | d('x') }}",
    "{{ 'a-b-c' | replace('-', '+') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ n | string }}|{{ '42' | int + 1 }}|{{ 'x' | int }}|{{ '2.5' | float }}|{{ 3.7 | int }}",
    "{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 7 | float }}|{{ [1, 2, 3] | sum }}|{{ lst | max }}|{{ lst | min }}",
    "{{ 'line1\\nline2\\n\\nline4' | indent(2) }}|{{ 'a\\nb' | indent(4, first=true) }}|{{ 'a\\n\\nb' | indent('--', blank=true) }}",
    "{{ '<a href=\"x\">&\\'</a>' | e }}|{{ '<b>' | safe }}|{{ d | items | list }}",
    "{{ messages[2] | tojson }}",
    "{{ {'k': 'Café ☕', 'n': [1, 2.0, none, true], 'q': 'a\"b\\\\c\\n'} | tojson }}",
    "{{ {'b': 1, 'a': {'c': []}} | tojson(indent=2) }}",
    "{{ {'b': 1, 'a': {}} | tojson(sort_keys=true) }}|{{ 'x' | tojson }}|{{ none | tojson }}|{{ [] | tojson(indent=4) }}",
    "{{ {'a': [1, 2], 'b': 'é'} | tojson(separators=(',', ':')) }}|{{ {'a': 1} | tojson(indent=2, separators=(', ', ' = ')) }}|{{ ['é'] | tojson(ensure_ascii=true) }}",
    "{% set j = joiner(' | ') %}{% for x in lst %}{{ j() }}{{ x }}{% endfor %}",
    "{{ d | dictsort(reverse=true) }}|{{ {'B': 1, 'a': 2} | dictsort }}|{{ {'B': 1, 'a': 2} | dictsort(case_sensitive=true) }}",
    "{{ messages | map(attribute='missing', default='?') | list }}|{{ messages | sort(attribute='role') | map(attribute='role') | join }}",
    "{% filter upper %}shout {{ n }}{% endfilter %}|{% filter trim %}   padded   {% endfilter %}",
    # Markup: safe/escape results escape the plain str they are added to
    "{{ \"Use '\"|safe + '<b>\"x\"' + \"'\"|safe + {'k': 'v'} | tojson }}",
    "{{ ('<' | e) + '<' }}|{{ '<' | safe ~ '<' }}|{{ ('<' | safe) | length }}|{{ '<' | e | e }}|{{ 'a' | safe is string }}|{{ ('x' | safe) == 'x' }}",
    "{{ ('a' | safe) * 2 + '&' }}|{{ '<' | safe in '<<' }}|{{ ['<' | safe] }}",
    # tests
    "{{ n is defined }}{{ zz is undefined }}{{ none is none }}{{ n is number }}{{ f is float }}{{ n is integer }}{{ true is integer }}{{ true is boolean }}",
    "{{ s is string }}{{ d is mapping }}{{ lst is iterable }}{{ lst is sequence }}{{ s is iterable }}{{ n is iterable }}{{ zz is iterable }}{{ d is sequence }}",
    "{{ n is odd }}{{ n is even }}{{ n is divisibleby 7 }}{{ n is divisibleby(2) }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ n is eq 7 }}{{ n is equalto 8 }}",
    "{{ true is true }}{{ 1 is true }}{{ false is false }}{{ n is gt 3 }}{{ n is lt 3 }}{{ 2 is in lst }}{{ n is not none }}{{ not n is none }}",
    # string methods
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n\\nhi\\n'.lstrip('\\n') }}",
    "{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'x</think>y'.split('</think>')[-1] }}",
    "{{ s.startswith('  He') }}{{ s.endswith('x') }}{{ 'abc'.startswith(('x', 'a')) }}|{{ 'abcabc'.find('c') }} {{ 'abc'.find('z') }} {{ 'abcabc'.rfind('b') }}|{{ 'a-b'.replace('-', '') }}",
    "{{ 'hello world'.title() }}|{{ 'hello'.capitalize() }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ ', '.join(['a', 'b']) }}|{{ 'abcab'.count('ab') }}|{{ '42'.isdigit() }}",
    "{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '{} and {name}'.format(1, name='x') }}|{{ 'x'.center(5) }}|{{ 'ab'.zfill(4) }}",
    "{{ 'Hello World'.swapcase() }}|{{ 'a-b'.partition('-') }}|{{ 'x.y.z'.rpartition('.') }}|{{ 'ab'.removeprefix('a') }}|{{ '  x '.rjust(6, '*') }}|{{ 'hello'.index('l') }}",
    "{{ '%-5s|%5s|%03d|%.1f|%x' % ('ab', 'cd', 7, 2.25, 255) }}",
    "{{ 'a\\U0001F600b\\U0001F601'|length }}|{{ 'a\\U0001F600b\\U0001F601'[1] }}|{{ 'a\\U0001F600b\\U0001F601'[::-1] }}|{{ 'a\\U0001F600b'[-2:] }}|{{ 'a\\U0001F600b'|list }}|{{ 'a\\U0001F600b'|reverse }}",
    "{{ 'a\\u00e9\\u4f60'|length }}|{{ '\\x41\\101\\u00e9' }}|{{ 'tab\\tq\\\\' }}|{{ 'x\\qy' }}",
    # undefined semantics
    "[{{ missing }}]{% if missing %}t{% else %}f{% endif %}{% for x in missing %}x{% endfor %}{{ missing | length }}{{ missing | list }}",
    "{{ d.missing.deeper }}",
    "{{ missing.attr }}",
    "{{ 'a' + missing }}",
    "{{ missing + 1 }}",
    "{{ missing() }}",
    "{{ missing is defined and missing.x }}|{{ d.a is defined and d.a }}",
    "{% set ns = namespace() %}{{ ns.x.y }}",
    "{% for i in [1] %}{{ loop.foo.y }}{% endfor %}",
    "{% macro m(a, b) %}{{ b.x }}{% endmacro %}{{ m(1) }}",
    "{{ 'abc'.foo.x }}",
    "{{ [1][3].x }}",
    "{{ none.x.y }}",
    "{{ (1 if false).x }}",
    "{{ ([] | first).x }}",
    # errors
    "{{ raise_exception('Custom failure') }}",
    "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
    "line1\n{{ 1 + 'a' }}",
    "line1\nline2\n{{ 'a' + 1 }}",
    "{% set d2 = {} %}{% set d2.x = 1 %}",
    "{{ [1] < 'a' }}",
    "{{ 1 / 0 }}",
    "{% for x in none %}{% endfor %}",
    "{% for x in 5 %}{% endfor %}",
    "{% set l = [1] %}{{ l.append(2) }}",
    "{% set l = {'a': 1} %}{{ l.pop('a') }}",
    "{{ lst | nosuchfilter }}",
    "{% if 1 is nosuchtest %}{% endif %}",
    "{{ n(1) }}",
    "a\n{% for x in lst %}\n{{ x.y.z }}\n{% endfor %}",
    # syntax errors
    "{% if true %}open",
    "{% for x in lst %}x{% endif %}",
    "line1\n{{ 1 + }}",
    "{% unknowntag %}",
    "{{ 'unterminated }}",
    "{% set = 1 %}",
    "{{ x | }}",
    "a\nb\n{% endfor %}",
]


def main():
    out = []
    for src in CASES:
        case = {"template": src}
        try:
            case["expected"] = env.from_string(src).render(**CTX)
        except Exception as e:  # noqa: BLE001 - recording every failure kind is the point
            case["error"] = f"{type(e).__name__}: {e}"
            if isinstance(e, jinja2.TemplateSyntaxError):
                case["error_line"] = e.lineno
        out.append(case)
    with open("jinja-cases.json", "w", encoding="utf-8") as f:
        json.dump({"generator": f"Jinja2 {jinja2.__version__}", "context": CTX, "cases": out}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
