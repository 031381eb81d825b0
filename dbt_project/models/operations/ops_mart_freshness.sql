-- A view, so it reads the facts of the build it is queried in: the live follower refreshes the per-minute
-- facts every few seconds between full builds, and a table built with the other operations models would
-- miss that (and the daily facts, which the same run rebuilds after them). Tagged `daily` so it is created
-- in the run that creates the facts it reads (a view over a table that does not exist yet cannot be created).
{{ config(materialized='view', tags=['daily']) }}

{%- set marts = [
    ('fct_events_per_minute', 'minute', 'event_minute'),
    ('fct_revenue_per_minute', 'minute', 'event_minute'),
    ('fct_errors_per_minute', 'minute', 'event_minute'),
    ('fct_events_per_hour', 'hour', 'event_hour'),
    ('fct_daily_active_users', 'day', 'activity_date'),
    ('fct_revenue_daily', 'day', 'revenue_date'),
    ('fct_funnel_daily', 'day', 'activity_date'),
] %}

{% for mart, grain, period in marts %}
    select
        '{{ mart }}' as mart_name,
        '{{ grain }}' as grain,
        cast(max({{ period }}) as {{ timestamptz_type() }}) as newest_period_start,
        cast(max({{ period }}) as {{ timestamptz_type() }}) + {{ interval_of(1, grain) }} as newest_period_end,
        max(built_at) as built_at
    from {{ ref(mart) }}
    {% if not loop.last %}union all{% endif %}
{% endfor %}
