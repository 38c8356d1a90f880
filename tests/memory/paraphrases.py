"""Paraphrase pairs written for the memory's recall test: the first of each is stored, the
second is the query, and each query must find its own pair's text first. The topics are
spread (and a few neighbours share one: two about cooking, two about money, two about
travel) so that the nearest wrong entry is not always far away."""

from __future__ import annotations

PAIRS: list[tuple[str, str]] = [
    (
        "The meeting with the design team was moved from Tuesday to Thursday afternoon.",
        "We rescheduled the design team's meeting to Thursday after lunch.",
    ),
    (
        "Remember to water the tomato plants every morning during the heat wave.",
        "During the hot spell the tomatoes need watering each morning.",
    ),
    (
        "The database backup runs every night at two o'clock.",
        "Each night at 2 am the database gets backed up.",
    ),
    (
        "Alice prefers her coffee black, without sugar.",
        "Alice drinks coffee with no milk and no sugar.",
    ),
    (
        "Our flight to Lisbon leaves at 7:40 from terminal 2.",
        "The plane to Lisbon departs from terminal two at 7:40.",
    ),
    (
        "The hotel in Rome includes breakfast and is close to the Colosseum.",
        "Breakfast is included at our Rome hotel, which is near the Colosseum.",
    ),
    (
        "The quarterly revenue grew by twelve percent compared to last year.",
        "Sales for the quarter were up 12% year over year.",
    ),
    (
        "I still owe Marco fifty euros for the concert tickets.",
        "Marco lent me 50 euros for the concert tickets and I have not paid him back.",
    ),
    (
        "Bake the bread at 220 degrees for thirty-five minutes.",
        "Cook the loaf in a 220-degree oven for 35 minutes.",
    ),
    (
        "Soak the chickpeas overnight before cooking the hummus.",
        "Leave the chickpeas in water overnight ahead of making hummus.",
    ),
    (
        "The cat is allergic to chicken, so feed her only fish.",
        "Our cat can't eat chicken because of an allergy; give her fish.",
    ),
    (
        "The Wi-Fi password for the guest network is written on the fridge.",
        "You can find the guest Wi-Fi password on the refrigerator.",
    ),
    (
        "The car needs new winter tyres before December.",
        "Before December we must put winter tires on the car.",
    ),
    (
        "The project deadline was extended by two weeks because of the outage.",
        "Due to the outage, we got two more weeks for the project.",
    ),
    (
        "My sister's birthday is on the third of May.",
        "May 3rd is my sister's birthday.",
    ),
    (
        "The printer on the second floor is out of toner.",
        "There is no toner left in the second-floor printer.",
    ),
    (
        "The library closes early on Saturdays, at one in the afternoon.",
        "On Saturday the library shuts at 1 pm.",
    ),
    (
        "Take the blood pressure medication with food twice a day.",
        "The blood pressure pills should be taken with meals, two times daily.",
    ),
    (
        "The server crashed because the disk ran out of space.",
        "A full disk caused the server to go down.",
    ),
    (
        "Tom is learning to play the violin and practises every evening.",
        "Every evening Tom practises the violin, which he is learning.",
    ),
    (
        "The river trail is closed after the flood damaged the bridge.",
        "Flooding damaged the bridge, so the path along the river is shut.",
    ),
    (
        "Our electricity bill doubled this winter because of the heating.",
        "Heating this winter made the power bill twice as high.",
    ),
]
