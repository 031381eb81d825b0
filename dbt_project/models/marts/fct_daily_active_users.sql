with

events as (
    select * from {{ ref('int_events_unioned') }}
),

final as (
    select
        cast(event_at as date) as activity_date,
        count(distinct user_id) as active_users
    from events
    group by 1
)

select * from final
