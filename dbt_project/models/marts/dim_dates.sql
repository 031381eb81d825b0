with

bounds as (
    select
        cast(first_event_at as date) as first_day,
        cast(last_event_at as date) as last_day
    from {{ ref('int_event_time_bounds') }}
),

days as (
    {{ day_series('bounds', 'first_day', 'last_day') }}
),

final as (
    select
        date_day,
        cast(date_trunc('week', date_day) as date) as week_start,
        cast(date_trunc('month', date_day) as date) as month_start,
        {{ iso_day_of_week('date_day') }} as day_of_week,
        {{ iso_day_of_week('date_day') }} in (6, 7) as is_weekend
    from days
)

select * from final
