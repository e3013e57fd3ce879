{#-
    `column in (cast('YYYY-MM-DD' as date), ...)` for a list of ISO dates, as the runner passes
    them in --vars (a JSON string, from a hand-typed --vars, is parsed too); false for an empty
    list. Each value is checked to be a plain date first: the values are pasted into SQL.
-#}
{% macro date_in(column, dates) -%}
    {%- if dates is string -%}{%- set dates = fromjson(dates) -%}{%- endif -%}
    {%- for d in dates -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', d | string) -%}
            {{ exceptions.raise_compiler_error("date_in: not a YYYY-MM-DD date: " ~ (d | string)) }}
        {%- endif -%}
    {%- endfor -%}
    {%- if dates | length == 0 -%}
        false
    {%- else -%}
        {{ column }} in (
            {%- for d in dates -%}
                cast('{{ d }}' as date){{ ", " if not loop.last }}
            {%- endfor -%}
        )
    {%- endif -%}
{%- endmacro %}
