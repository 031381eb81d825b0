with

events as (
    select * from {{ ref('int_events_unioned') }}
),

final as (
    select
        date_trunc('minute', event_at) as event_minute,
        event_type,
        count(*) as event_count
    from events
    group by 1, 2
)

select * from final
