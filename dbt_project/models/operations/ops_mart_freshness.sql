-- A view, so it reads the facts of the build it is queried in: the live follower refreshes the per-minute
-- facts every few seconds between full builds, and a table built with the other operations models would
-- miss that (and the daily facts, which the same run rebuilds after them). Tagged `daily` so it is created
-- in the run that creates the facts it reads (a view over a table that does not exist yet cannot be created).
{{ config(materialized='view', tags=['daily']) }}

with

events_per_minute as (
    select
        'fct_events_per_minute' as mart_name,
        'minute' as grain,
        max(event_minute) as newest_period_start,
        max(event_minute) + interval 1 minute as newest_period_end,
        max(built_at) as built_at
    from {{ ref('fct_events_per_minute') }}
),

revenue_per_minute as (
    select
        'fct_revenue_per_minute' as mart_name,
        'minute' as grain,
        max(event_minute) as newest_period_start,
        max(event_minute) + interval 1 minute as newest_period_end,
        max(built_at) as built_at
    from {{ ref('fct_revenue_per_minute') }}
),

events_per_hour as (
    select
        'fct_events_per_hour' as mart_name,
        'hour' as grain,
        max(event_hour) as newest_period_start,
        max(event_hour) + interval 1 hour as newest_period_end,
        max(built_at) as built_at
    from {{ ref('fct_events_per_hour') }}
),

daily_active_users as (
    select
        'fct_daily_active_users' as mart_name,
        'day' as grain,
        cast(max(activity_date) as timestamptz) as newest_period_start,
        cast(max(activity_date) as timestamptz) + interval 1 day as newest_period_end,
        max(built_at) as built_at
    from {{ ref('fct_daily_active_users') }}
),

revenue_daily as (
    select
        'fct_revenue_daily' as mart_name,
        'day' as grain,
        cast(max(revenue_date) as timestamptz) as newest_period_start,
        cast(max(revenue_date) as timestamptz) + interval 1 day as newest_period_end,
        max(built_at) as built_at
    from {{ ref('fct_revenue_daily') }}
),

funnel_daily as (
    select
        'fct_funnel_daily' as mart_name,
        'day' as grain,
        cast(max(activity_date) as timestamptz) as newest_period_start,
        cast(max(activity_date) as timestamptz) + interval 1 day as newest_period_end,
        max(built_at) as built_at
    from {{ ref('fct_funnel_daily') }}
),

final as (
    select * from events_per_minute
    union all
    select * from revenue_per_minute
    union all
    select * from events_per_hour
    union all
    select * from daily_active_users
    union all
    select * from revenue_daily
    union all
    select * from funnel_daily
)

select * from final
