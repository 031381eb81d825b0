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
        user_id,
        cast(event_at as date) as activity_date
    from events
),

-- Each date meets the user-days of the 30 days ending with it; the narrower windows filter those.
-- Counting distinct users (not summing daily counts) counts a user active on several days once.
active_users as (
    select
        dates.date_day as activity_date,
        {{ count_distinct_where('user_days.user_id', 'user_days.activity_date = dates.date_day') }} as dau,
        {{ count_distinct_where(
            'user_days.user_id', 'user_days.activity_date > ' ~ date_minus_days('dates.date_day', 7)
        ) }} as wau,
        {{ count_distinct_where(
            'user_days.user_id', 'user_days.activity_date > ' ~ date_minus_days('dates.date_day', 28)
        ) }} as mau,
        count(distinct user_days.user_id) as mau_30d
    from dates
    left join user_days
        on dates.date_day >= user_days.activity_date
        and {{ date_minus_days('dates.date_day', 30) }} < user_days.activity_date
    group by 1
),

final as (
    {{ daily_partition_rows('active_users', 'activity_date') }}
)

select * from final
