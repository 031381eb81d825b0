{{ config(materialized='incremental', incremental_strategy='append', tags=['daily'], pre_hook="{{ delete_partition_range() }}") }}

with

dates as (
    select * from {{ ref('dim_dates') }}
    where {{ in_partition_range('date_day') }}
),

events as (
    select * from {{ ref('int_events_unioned') }}
    where {{ in_partition_range('event_at', lookback_days=29) }}  -- mau_30d looks 29 days back
),

user_days as (
    select distinct
        cast(event_at as date) as activity_date,
        user_id
    from events
),

-- Each date meets the user-days of the 30 days ending with it; the narrower windows filter those.
-- Counting distinct users (not summing daily counts) counts a user active on several days once.
final as (
    select
        dates.date_day as activity_date,
        count(distinct user_days.user_id) filter (where user_days.activity_date = dates.date_day) as dau,
        count(distinct user_days.user_id) filter (where user_days.activity_date > dates.date_day - 7) as wau,
        count(distinct user_days.user_id) filter (where user_days.activity_date > dates.date_day - 28) as mau,
        count(distinct user_days.user_id) as mau_30d
    from dates
    left join user_days
        on user_days.activity_date > dates.date_day - 30
        and user_days.activity_date <= dates.date_day
    group by 1
)

select
    final.*,
    cast(activity_date as date) as partition_date,
    current_timestamp as built_at
from final
where {{ in_partition_range('activity_date') }}
