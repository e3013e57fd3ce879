{#-
    Turns the `lake.item_attributes` source (whose identifier is the lake's items folder, one
    <format>.parquet per import: ingest/item_lake.py) into something the adapter can select from.
    Unlike the events, the folder may be missing or empty (no import had an item table), and
    the models must still build: each engine is given a relation that reads as empty then.
-#}
{% macro read_lake_item_attributes(source_relation) -%}
    {%- if source_relation.type == 'cte' -%}
        {#- a dbt unit test: its fixture stands in for the lake as a CTE, read as it is -#}
        {{ return(source_relation) }}
    {%- endif -%}
    {{ return(adapter.dispatch('read_lake_item_attributes', 'recsys')(source_relation)) }}
{%- endmacro %}

{#- The lake's item table columns, in file order (ingest/item_lake.py). -#}
{% macro lake_item_attribute_columns() -%}
    source string, item_id string, attribute string, value string, position int
{%- endmacro %}

{% macro duckdb__read_lake_item_attributes(source_relation) -%}
    {%- set pattern = source_relation.identifier ~ '/*.parquet' -%}
    {%- set n_files = 0 -%}
    {%- if execute -%}
        {#- DuckDB's read_parquet refuses a pattern that matches no file, so look first -#}
        {%- set n_files = run_query("select count(*) from glob('" ~ pattern ~ "')").columns[0].values()[0] -%}
    {%- endif -%}
    {%- if n_files > 0 -%}
        read_parquet('{{ pattern }}', union_by_name = true)
    {%- else -%}
        (
            select
                cast(null as varchar) as source,
                cast(null as varchar) as item_id,
                cast(null as varchar) as attribute,
                cast(null as varchar) as value,
                cast(null as integer) as position
            where false
        )
    {%- endif -%}
{%- endmacro %}

{% macro spark__read_lake_item_attributes(source_relation) -%}
    {#-
        parquet.`folder` fails on a missing or empty folder. An external table with a declared
        schema does not: Spark creates it without looking at the location and lists a missing
        top-level folder as no files. Re-created on every run, so it follows RECSYS_LAKE_DIR.
    -#}
    {%- set table = target.schema ~ '.lake_item_attributes' -%}
    {%- if execute -%}
        {%- do run_query('create schema if not exists ' ~ target.schema) -%}
        {%- do run_query('drop table if exists ' ~ table) -%}
        {%- do run_query('create table ' ~ table ~ ' (' ~ lake_item_attribute_columns() ~ ') using parquet'
                         ~ " location '" ~ source_relation.identifier ~ "'") -%}
    {%- endif -%}
    {{ table }}
{%- endmacro %}

{% macro default__read_lake_item_attributes(source_relation) -%}
    {{ exceptions.raise_compiler_error(
        "read_lake_item_attributes: no reader for adapter '" ~ adapter.type() ~ "'; add a <adapter>__read_lake_item_attributes macro"
    ) }}
{%- endmacro %}
