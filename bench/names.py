"""Norwegian given names, surnames and places for synthetic test data."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SURNAMES: tuple[str, ...] = _words(
    """
    Hansen Johansen Olsen Larsen Andersen Pedersen Nilsen Kristiansen Jensen Karlsen
    Johnsen Pettersen Eriksen Berg Haugen Hagen Johannessen Andreassen Jacobsen Dahl
    Jørgensen Halvorsen Henriksen Lund Sørensen Jakobsen Moen Gundersen Iversen Strand
    Solberg Svendsen Eide Knutsen Martinsen Paulsen Bakken Kristoffersen Mathisen Lie
    Amundsen Nguyen Rasmussen Ali Lunde Solheim Berge Moe Nygård Bakke
    Kristensen Fredriksen Holm Lien Hauge Christensen Andresen Nielsen Knudsen Evensen
    Sæther Aas Myhre Hanssen Ahmed Haugland Thomassen Sivertsen Simonsen Danielsen
    Berntsen Sandvik Rønning Arnesen Antonsen Næss Vik Haug Ellingsen Thorsen
    Edvardsen Birkeland Isaksen Gulbrandsen Ruud Aasen Strøm Myklebust Tangen Ødegård
    Eliassen Helland Bøe Jenssen Aune Mikkelsen Tveit Brekke Abrahamsen Madsen
    Engen Dale Nordby Fjeld Vold Hovland Sletten Gjerde Hamre Brenna
    Berget Løken Tveiten Nordli Hoel Bjerke Fossum Eng Fosse Lorentzen
    Ødegaard Hellesøy Bø Rød Dahle Mørk Kvam Wold Nordheim Haga
    Steen Lindberg Jensvold Aasheim Skaug Sandberg Helle Stene Eggen Hagen-Olsen
    Opsahl Rustad Grønli Tønnessen Thoresen Vik-Hansen Kolstad Lindstad Foss Bergersen
    Torgersen Pedersen-Berg Ness Nordahl Vestby Sunde Flaten Lea Rønneberg Tollefsen
    Nilssen Ottesen Mikalsen Kleven Skjelbred Austad Bratberg Grande Hole Holmen
    Hegge Jakobsen-Lie Kaspersen Korneliussen Langeland Lyngstad Mo Nesse Olstad Ovesen
    Rasmussen-Vik Refsnes Sandnes Selvik Skogen Smestad Stokke Sundby Sveen Syversen
    Teigen Tjelta Torp Ulvestad Valle Varhaug Wiik Øien Åsheim Årdal
    """
)

FEMALE_GIVEN: tuple[str, ...] = _words(
    """
    Nora Emma Olivia Sofie Ella Ingrid Anne Inger Kari Marit Liv Eva Berit Astrid Bjørg
    Hilde Solveig Randi Silje Ida Maja Sara Thea Leah Frida Amalie Hedda Tiril Mathilde
    Ingeborg Kristin Tone Marianne Heidi Elisabeth Camilla Ragnhild Gunn Åse Sigrid
    Synnøve Gro Torill Turid Unni Vigdis Wenche Mette Hanne Lene
    """
)

MALE_GIVEN: tuple[str, ...] = _words(
    """
    Jan Per Bjørn Ole Lars Kjell Knut Arne Svein Thomas Hans Geir Tor Morten Terje Odd
    Erik Martin Andreas John Anders Rune Trond Tore Jon Harald Olav Magnus Jakob Emil
    Noah Oliver Filip William Lucas Henrik Aksel Isak Sander Even Håkon Sindre Øystein
    Eirik Stian Espen Frode Gunnar Leif Ståle
    """
)

STREETS: tuple[str, ...] = (
    "Storgata",
    "Kirkegata",
    "Skolegata",
    "Parkveien",
    "Strandveien",
    "Industriveien",
    "Sjøgata",
    "Kongens gate",
    "Dronningens gate",
    "Bjørkeveien",
    "Granveien",
    "Furuveien",
    "Solbakken",
    "Fjellveien",
    "Elvegata",
    "Møllegata",
    "Havnegata",
    "Stasjonsveien",
)

PLACES: tuple[tuple[str, str], ...] = (
    ("0150", "Oslo"),
    ("5003", "Bergen"),
    ("7011", "Trondheim"),
    ("4006", "Stavanger"),
    ("9008", "Tromsø"),
    ("4610", "Kristiansand"),
    ("3015", "Drammen"),
    ("1606", "Fredrikstad"),
    ("2317", "Hamar"),
    ("8006", "Bodø"),
    ("6002", "Ålesund"),
    ("2609", "Lillehammer"),
    ("3717", "Skien"),
    ("5501", "Haugesund"),
    ("1530", "Moss"),
    ("2821", "Gjøvik"),
    ("7600", "Levanger"),
    ("9600", "Hammerfest"),
    ("9900", "Kirkenes"),
    ("6800", "Førde"),
)
