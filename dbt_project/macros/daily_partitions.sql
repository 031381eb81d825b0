{#-
    Daily partitions of the incremental facts (tag `daily`). Dagster runs them for a date range
    (environment variables PLATFORM_DBT_MIN_DATE and PLATFORM_DBT_MAX_DATE, YYYY-MM-DD: a partition,
    a backfill range, or the days new data touched; not --vars, whose every change makes dbt re-parse
    the whole project);
    each run deletes exactly those days and inserts them recomputed from all their events, so
    reprocessing a day never double counts and late events are picked up. Without them
    (`dbt build` by hand) every day is rebuilt.

    The live follower also sets PLATFORM_DBT_MIN_TIME (ISO 8601, UTC, a minute's start): the live facts
    then delete and recompute only the minutes from it on, the earliest the new rows touched, so a
    refresh every few seconds costs what landed since the last, not the whole day so far. Read only when
    executing, never while parsing, so its changing value never makes dbt re-parse the project.
-#}

{% macro partition_date(bound) -%}
    {%- if bound == 'min' -%}
        {{ return(env_var('PLATFORM_DBT_MIN_DATE', '')) }}
    {%- else -%}
        {{ return(env_var('PLATFORM_DBT_MAX_DATE', '')) }}
    {%- endif -%}
{%- endmacro %}

{% macro partition_min_time() -%}
    {{ return(env_var('PLATFORM_DBT_MIN_TIME', '') if execute else '') }}
{%- endmacro %}

{% macro partition_dates_given() -%}
    {{ return(partition_date('min') != '' and partition_date('max') != '') }}
{%- endmacro %}

{#- Rows whose date or timestamp column falls in the run's range, optionally reaching `lookback_days`
    further back for windows (rolling counts) that need earlier days as input. A half-open range on
    the bare column (no cast) is what DuckDB pushes below the staging views' dedup window and into
    the Iceberg scan: a one-day build then reads one day, not every raw row. With a min time, rows from
    it on, or from `lookback_minutes` before it for the same windows. -#}
{% macro in_partition_range(column, lookback_days=0, lookback_minutes=0) -%}
    {%- if partition_dates_given() -%}
        {{ column }} >= {{ date_minus_days("cast('" ~ partition_date('min') ~ "' as date)", lookback_days) }}
        and {{ column }} < {{ date_plus_days("cast('" ~ partition_date('max') ~ "' as date)", 1) }}
        {%- if partition_min_time() != '' %}
        and {{ column }} >= {{ iso_timestamp("'" ~ partition_min_time() ~ "'") }}
            {%- if lookback_minutes %} - {{ interval_of(lookback_minutes, 'minutes') }}{% endif %}
        {%- endif -%}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- pre_hook: delete the run's days from the existing table (the model then appends them); with a min
    time, only its rows from then on, by the column the model's meta names as `live_time_column`. -#}
{% macro delete_partition_range() -%}
    {%- if is_incremental() and partition_dates_given() -%}
        delete from {{ this }}
        where partition_date between cast('{{ partition_date("min") }}' as date) and cast('{{ partition_date("max") }}' as date)
        {%- if partition_min_time() != '' %}
            {%- set time_column = config.meta_get('live_time_column') %}
            {%- if not time_column %}
                {{ exceptions.raise_compiler_error(
                    "PLATFORM_DBT_MIN_TIME is set, but " ~ this ~ " has no meta live_time_column: only the "
                    ~ "live facts (tag live) rebuild from a minute on; unset it to rebuild whole days") }}
            {%- endif %}
        and {{ time_column }} >= {{ iso_timestamp("'" ~ partition_min_time() ~ "'") }}
        {%- endif -%}
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The rows a daily fact writes: those of `relation` whose `date_column` (a date or a timestamp) falls
    in the run's days, with the day they belong to (`partition_date`, which the pre_hook deletes by) and
    when they were computed (`built_at`). Every daily fact ends with it:
    `final as ({{ daily_partition_rows('counts', 'activity_date') }})`. -#}
{% macro daily_partition_rows(relation, date_column) -%}
    select
        {{ relation }}.*,
        cast({{ relation }}.{{ date_column }} as date) as partition_date,
        current_timestamp as built_at
    from {{ relation }}
    where {{ in_partition_range(relation ~ '.' ~ date_column) }}
{%- endmacro %}
