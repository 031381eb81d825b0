with

bounds as (
    select
        cast(first_event_at as date) as first_day,
        cast(last_event_at as date) as last_day
    from {{ ref('int_event_time_bounds') }}
),

days as (
    select cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as date_day
    from bounds
    where first_day is not null
),

final as (
    select
        date_day,
        cast(date_trunc('week', date_day) as date) as week_start,
        cast(date_trunc('month', date_day) as date) as month_start,
        isodow(date_day) as day_of_week,
        isodow(date_day) in (6, 7) as is_weekend
    from days
)

select * from final
