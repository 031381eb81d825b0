{#-
    Daily partitions of the incremental facts (tag `daily`). Dagster runs them for a date range
    (vars `min_date`, `max_date`: a partition, a backfill range, or the days new data touched);
    each run deletes exactly those days and inserts them recomputed from all their events, so
    reprocessing a day never double counts and late events are picked up. Without the vars
    (`dbt build` by hand) every day is rebuilt.
-#}

{% macro partition_dates_given() -%}
    {{ return(var('min_date', none) is not none and var('max_date', none) is not none) }}
{%- endmacro %}

{#- Rows whose date or timestamp column falls in the run's range, optionally reaching `lookback_days`
    further back for windows (rolling counts) that need earlier days as input. A half-open range on
    the bare column (no cast) is what DuckDB pushes below the staging views' dedup window and into
    the Iceberg scan: a one-day build then reads one day, not every raw row. -#}
{% macro in_partition_range(column, lookback_days=0) -%}
    {%- if partition_dates_given() -%}
        {{ column }} >= cast('{{ var("min_date") }}' as date) - {{ lookback_days }}
        and {{ column }} < cast('{{ var("max_date") }}' as date) + 1
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- pre_hook: delete the run's days from the existing table (the model then appends them). -#}
{% macro delete_partition_range() -%}
    {%- if is_incremental() and partition_dates_given() -%}
        delete from {{ this }}
        where partition_date between cast('{{ var("min_date") }}' as date) and cast('{{ var("max_date") }}' as date)
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
