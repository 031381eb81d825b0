{#-
    Every purchase's revenue in EUR at the seed's fixed rate, rounded to cents per purchase, so a day's
    or a minute's revenue is the sum of what each order showed, never re-rounded. A currency without a
    rate gives a null `revenue_eur`: unknown, never silently counted as zero.
-#}
with

purchases as (
    select * from {{ ref('stg_purchases') }}
),

currency_rates as (
    select * from {{ ref('currency_rates') }}
),

final as (
    select
        purchases.event_id,
        purchases.event_at,
        purchases.user_id,
        purchases.order_id,
        purchases.currency,
        cast(round(purchases.revenue * currency_rates.eur_per_unit, 2) as decimal(18, 2)) as revenue_eur
    from purchases
    left join currency_rates
        on purchases.currency = currency_rates.currency
)

select * from final
