{#-
    The SQL that DuckDB (targets `dev` and `platform`) and Trino (target `trino`) spell differently, one
    macro per construct, dispatched on the adapter (adapter.dispatch): the models call these and build
    on both. Each duckdb__ version renders exactly what the models said before, so DuckDB builds are
    unchanged; each trino__ version computes the same result in Trino's SQL. What both engines spell
    alike (date_trunc, regexp_replace, bool_or, count(*) filter (...) as an aggregate, range frames over
    timestamps) stays plain SQL in the models. tests/marts/test_trino_compile.py compiles every model for
    the trino target and parses it as Trino SQL. Another adapter needs its own `<adapter>__` versions.
-#}

{#- The first row of each `partition_by` group in `order_by` order (deduplication, next change).
    DuckDB filters the window with QUALIFY; Trino has none, so a subquery numbers the rows (its
    `first_row_number` column stays in the result, which callers then select columns from). -#}
{% macro first_row_per(relation, partition_by, order_by, columns='*') -%}
    {{ return(adapter.dispatch('first_row_per', 'analytics_platform')(relation, partition_by, order_by, columns)) }}
{%- endmacro %}

{% macro duckdb__first_row_per(relation, partition_by, order_by, columns) -%}
    select {{ columns }}
    from {{ relation }}
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}

{% macro trino__first_row_per(relation, partition_by, order_by, columns) -%}
    select {{ columns }}
    from (
        select
            *,
            row_number() over (partition by {{ partition_by }} order by {{ order_by }}) as first_row_number
        from {{ relation }}
    ) as numbered
    where first_row_number = 1
{%- endmacro %}

{#- One row per distinct `keys` (whichever row of a group: the rows of a group are copies). DuckDB's
    DISTINCT ON; Trino has none: an unordered row_number. -#}
{% macro distinct_rows_on(relation, keys, columns) -%}
    {{ return(adapter.dispatch('distinct_rows_on', 'analytics_platform')(relation, keys, columns)) }}
{%- endmacro %}

{% macro duckdb__distinct_rows_on(relation, keys, columns) -%}
    select distinct on ({{ keys }})
        {{ columns }}
    from {{ relation }}
    order by {{ keys }}
{%- endmacro %}

{% macro trino__distinct_rows_on(relation, keys, columns) -%}
    select
        {{ columns }}
    from (
        select
            *,
            row_number() over (partition by {{ keys }}) as distinct_row_number
        from {{ relation }}
    ) as numbered
    where distinct_row_number = 1
{%- endmacro %}

{#- An interval literal: `interval_of(30, 'minutes')`. DuckDB takes `interval 30 minutes`; Trino a
    quoted count and a singular unit (`interval '30' minute`). -#}
{% macro interval_of(count, unit) -%}
    {{ return(adapter.dispatch('interval_of', 'analytics_platform')(count, unit)) }}
{%- endmacro %}

{% macro duckdb__interval_of(count, unit) -%}
    interval {{ count }} {{ unit }}
{%- endmacro %}

{% macro trino__interval_of(count, unit) -%}
    interval '{{ count }}' {{ unit[:-1] if unit.endswith('s') else unit }}
{%- endmacro %}

{#- A date `days` days later or earlier (DuckDB adds integers to dates; Trino needs date_add). -#}
{% macro date_plus_days(date_expression, days) -%}
    {{ return(adapter.dispatch('date_plus_days', 'analytics_platform')(date_expression, days)) }}
{%- endmacro %}

{% macro duckdb__date_plus_days(date_expression, days) -%}
    {{ date_expression }} + {{ days }}
{%- endmacro %}

{% macro trino__date_plus_days(date_expression, days) -%}
    date_add('day', {{ days }}, {{ date_expression }})
{%- endmacro %}

{% macro date_minus_days(date_expression, days) -%}
    {{ return(adapter.dispatch('date_minus_days', 'analytics_platform')(date_expression, days)) }}
{%- endmacro %}

{% macro duckdb__date_minus_days(date_expression, days) -%}
    {{ date_expression }} - {{ days }}
{%- endmacro %}

{% macro trino__date_minus_days(date_expression, days) -%}
    date_add('day', -{{ days }}, {{ date_expression }})
{%- endmacro %}

{#- Whole days from `start_date` to `end_date` (DuckDB subtracts dates; Trino has date_diff). -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between', 'analytics_platform')(start_date, end_date)) }}
{%- endmacro %}

{% macro duckdb__days_between(start_date, end_date) -%}
    ({{ end_date }} - {{ start_date }})
{%- endmacro %}

{% macro trino__days_between(start_date, end_date) -%}
    date_diff('day', {{ start_date }}, {{ end_date }})
{%- endmacro %}

{#- Division as a double, also of integers and decimals: DuckDB's `/` always gives one; Trino's
    divides integers to an integer and decimals at the operands' scale. -#}
{% macro divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('divide', 'analytics_platform')(numerator, denominator)) }}
{%- endmacro %}

{% macro duckdb__divide(numerator, denominator) -%}
    {{ numerator }} / {{ denominator }}
{%- endmacro %}

{% macro trino__divide(numerator, denominator) -%}
    cast({{ numerator }} as double) / {{ denominator }}
{%- endmacro %}

{#- Seconds since the Unix epoch, fractional, of a timestamp with time zone. -#}
{% macro epoch_seconds(timestamp_expression) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'analytics_platform')(timestamp_expression)) }}
{%- endmacro %}

{% macro duckdb__epoch_seconds(timestamp_expression) -%}
    epoch({{ timestamp_expression }})
{%- endmacro %}

{% macro trino__epoch_seconds(timestamp_expression) -%}
    to_unixtime({{ timestamp_expression }})
{%- endmacro %}

{#- Seconds from one timestamp to another, to the microsecond in DuckDB (Trino's date_diff has no
    microsecond unit: the difference of the epoch seconds). -#}
{% macro seconds_between(start_timestamp, end_timestamp) -%}
    {{ return(adapter.dispatch('seconds_between', 'analytics_platform')(start_timestamp, end_timestamp)) }}
{%- endmacro %}

{% macro duckdb__seconds_between(start_timestamp, end_timestamp) -%}
    date_diff('microsecond', {{ start_timestamp }}, {{ end_timestamp }}) / 1000000
{%- endmacro %}

{% macro trino__seconds_between(start_timestamp, end_timestamp) -%}
    (to_unixtime({{ end_timestamp }}) - to_unixtime({{ start_timestamp }}))
{%- endmacro %}

{#- The type of a timestamp with time zone (microseconds, as the raw tables store it). -#}
{% macro timestamptz_type() -%}
    {{ return(adapter.dispatch('timestamptz_type', 'analytics_platform')()) }}
{%- endmacro %}

{% macro duckdb__timestamptz_type() -%}
    timestamptz
{%- endmacro %}

{% macro trino__timestamptz_type() -%}
    timestamp(6) with time zone
{%- endmacro %}

{#- An ISO 8601 string (`2026-01-02T03:04:05.123456+00:00`, as Python's isoformat writes) as a
    timestamp with time zone. Trino's cast wants a space, not the `T`: from_iso8601 parses it, and the
    value is moved to UTC, so date_trunc and casts to date see the UTC day as DuckDB (time zone UTC) does. -#}
{% macro iso_timestamp(string_expression) -%}
    {{ return(adapter.dispatch('iso_timestamp', 'analytics_platform')(string_expression)) }}
{%- endmacro %}

{% macro duckdb__iso_timestamp(string_expression) -%}
    cast({{ string_expression }} as timestamptz)
{%- endmacro %}

{% macro trino__iso_timestamp(string_expression) -%}
    cast(from_iso8601_timestamp_nanos({{ string_expression }}) at time zone 'UTC' as timestamp(6) with time zone)
{%- endmacro %}

{#- A timestamp as text in UTC, to the millisecond: `2026-01-02T03:04:05.123Z`. -#}
{% macro utc_iso_millis(timestamp_expression) -%}
    {{ return(adapter.dispatch('utc_iso_millis', 'analytics_platform')(timestamp_expression)) }}
{%- endmacro %}

{% macro duckdb__utc_iso_millis(timestamp_expression) -%}
    strftime(
            timezone('UTC', {{ timestamp_expression }}),
            '%Y-%m-%dT%H:%M:%S.%gZ'
        )
{%- endmacro %}

{% macro trino__utc_iso_millis(timestamp_expression) -%}
    format_datetime(
            ({{ timestamp_expression }}) at time zone 'UTC',
            'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''
        )
{%- endmacro %}

{#- ISO day of the week, 1 (Monday) to 7 (Sunday). -#}
{% macro iso_day_of_week(date_expression) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'analytics_platform')(date_expression)) }}
{%- endmacro %}

{% macro duckdb__iso_day_of_week(date_expression) -%}
    isodow({{ date_expression }})
{%- endmacro %}

{% macro trino__iso_day_of_week(date_expression) -%}
    day_of_week({{ date_expression }})
{%- endmacro %}

{#- The text at a JSON path key of a JSON document held as text: `json_text('summary', 'added-records')`. -#}
{% macro json_text(json_expression, key) -%}
    {{ return(adapter.dispatch('json_text', 'analytics_platform')(json_expression, key)) }}
{%- endmacro %}

{% macro duckdb__json_text(json_expression, key) -%}
    {{ json_expression }} ->> '$."{{ key }}"'
{%- endmacro %}

{% macro trino__json_text(json_expression, key) -%}
    json_extract_scalar({{ json_expression }}, '$["{{ key }}"]')
{%- endmacro %}

{#- The last `delimiter`-separated part of a string (split_part takes no negative index in Trino). -#}
{% macro last_part(string_expression, delimiter) -%}
    {{ return(adapter.dispatch('last_part', 'analytics_platform')(string_expression, delimiter)) }}
{%- endmacro %}

{% macro duckdb__last_part(string_expression, delimiter) -%}
    split_part({{ string_expression }}, '{{ delimiter }}', -1)
{%- endmacro %}

{% macro trino__last_part(string_expression, delimiter) -%}
    element_at(split({{ string_expression }}, '{{ delimiter }}'), -1)
{%- endmacro %}

{#- The value of the first row in `order_by` order (an ordered aggregate; null values count). -#}
{% macro first_by(value, order_by) -%}
    {{ return(adapter.dispatch('first_by', 'analytics_platform')(value, order_by)) }}
{%- endmacro %}

{% macro duckdb__first_by(value, order_by) -%}
    first({{ value }} order by {{ order_by }})
{%- endmacro %}

{% macro trino__first_by(value, order_by) -%}
    element_at(array_agg({{ value }} order by {{ order_by }}), 1)
{%- endmacro %}

{#- Any non-null value of the group (null if there is none). Not dbt.any_value: dbt-duckdb renders that
    as arbitrary(), which may pick a null. -#}
{% macro any_non_null(value) -%}
    {{ return(adapter.dispatch('any_non_null', 'analytics_platform')(value)) }}
{%- endmacro %}

{% macro duckdb__any_non_null(value) -%}
    any_value({{ value }})
{%- endmacro %}

{% macro trino__any_non_null(value) -%}
    arbitrary({{ value }})
{%- endmacro %}

{#- Distinct values of `value` among the rows where `condition` holds (an aggregate). -#}
{% macro count_distinct_where(value, condition) -%}
    {{ return(adapter.dispatch('count_distinct_where', 'analytics_platform')(value, condition)) }}
{%- endmacro %}

{% macro duckdb__count_distinct_where(value, condition) -%}
    count(distinct {{ value }}) filter (where {{ condition }})
{%- endmacro %}

{% macro trino__count_distinct_where(value, condition) -%}
    count(distinct case when {{ condition }} then {{ value }} end)
{%- endmacro %}

{#- Rows where `condition` holds, as a window aggregate: `{{ count_where_over('x', 'partition by ...') }}`. -#}
{% macro count_where_over(condition, window) -%}
    {{ return(adapter.dispatch('count_where_over', 'analytics_platform')(condition, window)) }}
{%- endmacro %}

{% macro duckdb__count_where_over(condition, window) -%}
    count(*) filter (where {{ condition }}) over ({{ window }})
{%- endmacro %}

{% macro trino__count_where_over(condition, window) -%}
    count(case when {{ condition }} then 1 end) over ({{ window }})
{%- endmacro %}

{#- One row per element of the array `array_column` of `relation`, as column `element_column`, beside
    `columns` (DuckDB unnests in the select list; Trino cross joins UNNEST). Empty and null arrays give
    no row in both. -#}
{% macro select_unnested(relation, columns, array_column, element_column) -%}
    {{ return(adapter.dispatch('select_unnested', 'analytics_platform')(relation, columns, array_column, element_column)) }}
{%- endmacro %}

{% macro duckdb__select_unnested(relation, columns, array_column, element_column) -%}
    select
        {{ columns | join(',\n        ') }},
        unnest({{ array_column }}) as {{ element_column }}
    from {{ relation }}
{%- endmacro %}

{% macro trino__select_unnested(relation, columns, array_column, element_column) -%}
    select
        {{ columns | join(',\n        ') }},
        unnested.{{ element_column }}
    from {{ relation }}
    cross join unnest({{ array_column }}) as unnested ({{ element_column }})
{%- endmacro %}

{#- Every day from `first_day` to `last_day` (dates of `relation`) as column `date_day`; no row when
    `first_day` is null (no data yet). -#}
{% macro day_series(relation, first_day, last_day) -%}
    {{ return(adapter.dispatch('day_series', 'analytics_platform')(relation, first_day, last_day)) }}
{%- endmacro %}

{% macro duckdb__day_series(relation, first_day, last_day) -%}
    select cast(unnest(generate_series({{ first_day }}, {{ last_day }}, interval 1 day)) as date) as date_day
    from {{ relation }}
    where {{ first_day }} is not null
{%- endmacro %}

{% macro trino__day_series(relation, first_day, last_day) -%}
    select series.date_day
    from {{ relation }}
    cross join unnest(sequence({{ first_day }}, {{ last_day }}, interval '1' day)) as series (date_day)
    where {{ first_day }} is not null
{%- endmacro %}
