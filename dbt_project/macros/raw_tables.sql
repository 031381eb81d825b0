{#-
    How the models reach the raw Iceberg tables. On every target a raw table is `source('raw', <name>)`:
    in a DuckDB build a view the build pins to a snapshot (analytics_platform/warehouse/builds.py), on
    Trino the catalog's table itself (`iceberg.raw.<name>`, at its current snapshot). Only the snapshot
    list differs: DuckDB builds create the view `raw.table_snapshots` from the pinned metadata files,
    while Trino lists each table's snapshots in its `<name>$snapshots` metadata table.
-#}

{#- The raw event tables, one per event type (topic `events.<event type>`). -#}
{% macro raw_event_tables() -%}
    {{ return([
        'user_visit', 'add_to_cart', 'checkout', 'purchase', 'app_error', 'user_profile_changed', 'product_changed'
    ]) }}
{%- endmacro %}

{#- The snapshots each raw table (event tables and dead_letter) keeps: table_name, snapshot_id,
    committed_at and the summary as JSON text. -#}
{% macro raw_table_snapshots() -%}
    {{ return(adapter.dispatch('raw_table_snapshots', 'analytics_platform')()) }}
{%- endmacro %}

{% macro duckdb__raw_table_snapshots() -%}
    {{ source('raw', 'table_snapshots') }}
{%- endmacro %}

{% macro trino__raw_table_snapshots() -%}
    (
        {%- for name in raw_event_tables() + ['dead_letter'] %}
        select
            '{{ name }}' as table_name,
            snapshot_id,
            committed_at,
            json_format(cast(summary as json)) as summary
        from {{ source('raw', name).incorporate(path={'identifier': name ~ '$snapshots'}) }}
        {%- if not loop.last %}
        union all
        {%- endif %}
        {%- endfor %}
    ) as table_snapshots
{%- endmacro %}
