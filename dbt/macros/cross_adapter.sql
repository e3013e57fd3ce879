{#- Small SQL pieces that DuckDB and Spark spell differently. -#}

{#- Microseconds since the epoch: exact integer arithmetic for gaps and durations. -#}
{% macro epoch_micros(ts) -%}
    {{ return(adapter.dispatch('epoch_micros', 'recsys')(ts)) }}
{%- endmacro %}

{% macro duckdb__epoch_micros(ts) -%} epoch_us({{ ts }}) {%- endmacro %}

{% macro spark__epoch_micros(ts) -%} unix_micros({{ ts }}) {%- endmacro %}

{% macro default__epoch_micros(ts) -%}
    cast(extract(epoch from {{ ts }}) * 1000000 as bigint)
{%- endmacro %}


{#- Days since 1970-01-01, so that day windows become integer ranges. -#}
{% macro day_number(d) -%}
    {{ return(adapter.dispatch('day_number', 'recsys')(d)) }}
{%- endmacro %}

{% macro duckdb__day_number(d) -%} (cast({{ d }} as date) - date '1970-01-01') {%- endmacro %}

{% macro spark__day_number(d) -%} unix_date(cast({{ d }} as date)) {%- endmacro %}

{% macro default__day_number(d) -%} (cast({{ d }} as date) - date '1970-01-01') {%- endmacro %}


{#-
    List of `value` sorted by the `order_by` columns, as an aggregate or, with `over`, as a
    window function over that frame. Spark's collect_list keeps no defined order, so it collects
    (order_by..., value) structs, sorts them and keeps the values.
-#}
{% macro ordered_list(value, order_by, over=none) -%}
    {{ return(adapter.dispatch('ordered_list', 'recsys')(value, order_by, over)) }}
{%- endmacro %}

{% macro duckdb__ordered_list(value, order_by, over) -%}
    list({{ value }} order by {{ order_by | join(', ') }})
    {%- if over %} over ({{ over }}){% endif %}
{%- endmacro %}

{% macro spark__ordered_list(value, order_by, over) -%}
    transform(
        array_sort(
            collect_list(struct({{ order_by | join(', ') }}, {{ value }} as list_value))
            {%- if over %} over ({{ over }}){% endif %}
        ),
        entry -> entry.list_value
    )
{%- endmacro %}

{% macro default__ordered_list(value, order_by, over) -%}
    array_agg({{ value }} order by {{ order_by | join(', ') }})
    {%- if over %} over ({{ over }}){% endif %}
{%- endmacro %}
