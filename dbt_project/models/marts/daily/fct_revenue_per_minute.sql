with

purchases as (
    select * from {{ ref('int_purchases_in_eur') }}
    where {{ in_partition_range('event_at') }}
),

revenue_per_minute as (
    select
        date_trunc('minute', event_at) as event_minute,
        -- Null, not understated, when a purchase of the minute has no EUR rate.
        case
            when count(revenue_eur) = count(*) then cast(sum(revenue_eur) as decimal(18, 2))
        end as revenue_eur,
        count(*) as orders
    from purchases
    group by 1
),

final as (
    {{ daily_partition_rows('revenue_per_minute', 'event_minute') }}
)

select * from final
